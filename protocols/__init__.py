"""Protocols: dataset readers and specs. REGISTRY maps a name to 'module:object' and a one-line summary;
adding a protocol is one module plus one line here."""

REGISTRY: dict[str, tuple[str, str]] = {
    "pitts_ial": ("protocols.ial_format:PITTS_IAL", "Pitts-IAL (AddressCLIP, ECCV 2024); needs --data-root"),
    "sf_ial_base": ("protocols.ial_format:SF_IAL_BASE", "SF-IAL-Base (AddressCLIP); needs --data-root"),
    "sf_ial_large": ("protocols.ial_format:SF_IAL_LARGE", "SF-IAL-Large (AddressCLIP); needs --data-root"),
    "helsinki": ("protocols.city.protocol:HELSINKI",
                 "central Helsinki from OpenStreetMap, rendered into street views (the embedded default)"),
    "kotka": ("protocols.city.protocol:KOTKA", "Kotka from OpenStreetMap, rendered (a second city)"),
    "joint": ("protocols.joint:JOINT", "Helsinki + Kotka as one dataset (joint training; scored per city too)"),
    "tiny": ("protocols.tiny:TINY", "a few hundred generated images on a synthetic street grid (tests, smoke runs)"),
    "ial": ("protocols.own_city:OWN_CITY",
            "a dataset you built with `data build --from-images` (or any IAL-format folder); needs --data-root"),
}

DEFAULT_PROTOCOL = "helsinki"
