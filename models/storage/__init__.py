"""fsspec IO shared by every layer: atomic writes, parquet tables, safetensors files."""
