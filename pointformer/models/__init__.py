"""models: the 3D backbone, superpoint tokens, the query decoder and the 3D segmentor.

Modules (import them directly; nothing heavy is imported here):
    tokens             Tokens (ragged batch), superpoint pooling
    position_encoding  Fourier features of positions normalised per scene
    sampling           farthest-point seeding of queries
    heads              class / mask / background heads, masked-attention rule
    decoder            QueryDecoder (shared by the 3D model and the 2D branch)
    backbone3d         Res16UNet sparse backbone
    segmentor          InstanceSegmentor3D, PointBatch, SegmentorOutput
    build              build_model(cfg), load_model_config(name)
See docs/model.md.
"""
