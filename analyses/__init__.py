"""Offline analyses over activation stores: pure functions over xarray/dask, no model loading."""
