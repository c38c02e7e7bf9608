"""Running trained models: the translator (any size, tiling, runtimes) and converting files,
folders and globs (`convert`)."""
