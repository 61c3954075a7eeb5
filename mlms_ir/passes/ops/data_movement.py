"""Data movement (zero FLOPs, bytes only), ops that cost nothing, and control flow."""

from __future__ import annotations

from mlms_ir.passes.registry import ML, Cost, OpContext, control_flow, cost, free

DATA_MOVEMENT = (
    "Reshape", "Transpose", "Concat", "Split", "Pad", "Expand", "Cast", "CastLike", "Tile", "Squeeze",
    "Unsqueeze", "Flatten", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Scatter",
    "Where", "Compress", "Range", "ConstantOfShape", "EyeLike", "Trilu", "OneHot", "ReverseSequence",
    "NonZero", "Unique", "Col2Im", "CenterCropPad", "SplitToSequence", "ConcatFromSequence",
    "SequenceAt", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceLength",
    "ImageDecoder", "StringNormalizer", "TfIdfVectorizer", "RegexFullMatch", "StringConcat", "StringSplit",
)


@cost(*DATA_MOVEMENT, category="data-movement")
def data_movement(ctx: OpContext) -> Cost:
    """0 FLOPs; reads its inputs and writes its outputs"""
    return Cost(0, 0)


@cost("Gather", "GatherElements", "GatherND", "Slice", category="data-movement")
def gather(ctx: OpContext) -> Cost:
    """0 FLOPs; reads only the selected elements (output bytes) and the index inputs"""
    written = sum(ctx.out_bytes(i) for i, o in enumerate(ctx.node.outputs) if o)
    index_bytes = sum(ctx.in_bytes(i) for i in range(1, len(ctx.node.inputs)) if ctx.has_input(i))
    return Cost(0, 0, bytes_read=written + index_bytes, bytes_written=written)


@cost("ArrayFeatureExtractor", "LabelEncoder", "CategoryMapper", "OneHotEncoder", "FeatureVectorizer", "DictVectorizer", "CastMap", domain=ML, category="data-movement")
def ml_data_movement(ctx: OpContext) -> Cost:
    """0 FLOPs; reads its inputs and writes its outputs"""
    return Cost(0, 0)


free("Constant", "Shape", "Size", "Identity", "Dropout", "Optional", "OptionalGetElement", "OptionalHasElement",
     "SequenceEmpty", why="costs nothing: metadata, a constant, or an identity at inference")
free("ZipMap", domain=ML, why="costs nothing: repackages outputs")

# If, Loop and Scan cost what their subgraphs cost; the cost pass evaluates those.
control_flow("If", "Loop", "Scan", why="control flow: costs what its subgraphs cost (If: the costlier branch; Loop: body x trip count when constant, else per iteration; Scan: body x iterations)")
