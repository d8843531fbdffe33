"""The classification family: geocell classification (PIGEON) and a plain sub-street classifier."""
