"""Rows and results folders: the flat, versioned row (record), the folder of atomic Parquet
parts with its manifest and schema upgrades (store), and the one way any file is
written (files).
"""
