"""The models that are compiled: the seed's block and the built-in families (llama, moe),
how a block is stacked (loop, scan, remat, unroll; linen or NNX), the language model and
KV-cached decoder they sit in, meshes, and `Program`, what a workload hands the measurer.
Nothing here measures, and nothing here knows of grids, processes or files.
"""
