"""The listening engine: plain Python and numpy, no Home Assistant imports."""
