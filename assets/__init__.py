"""Static files read with importlib.resources (styles, bundled catalog data)."""
