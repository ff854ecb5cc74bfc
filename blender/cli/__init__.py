"""The thin Hydra entry points behind `make`: each composes its config (`conf/<name>.yaml`), turns it into typed
settings (`common`) and calls one library function. Nothing below `blender.cli` imports it or takes a `DictConfig`."""
