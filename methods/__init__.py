"""Methods. REGISTRY maps a name to 'module:Class' and a one-line summary; nothing here imports a method
module, so listing is instant. Adding a method is one module plus one line here (or an entry point in the
`ialbench.methods` group for methods that live in another package)."""

REGISTRY: dict[str, tuple[str, str]] = {
    "oracle-gps": ("methods.reference:OracleGPS",
                   "true query GPS -> gazetteer: the ceiling of every image -> GPS -> address pipeline"),
    "prior": ("methods.reference:Prior", "addresses ranked by training frequency, the same for every query"),
    "tiny-images": ("methods.tiny_images:TinyImages",
                    "training-free retrieval on 16x16 grey thumbnails (faiss) -> gazetteer"),
    "densevlad": ("methods.densevlad:DenseVLAD",
                  "training-free: dense multi-scale RootSIFT, VLAD, PCA-whitening (faiss) -> geocoder"),
    "anyloc": ("methods.anyloc:AnyLoc",
               "training-free: VLAD over a foundation model's dense features (DINOv2 facet, or the Kotka trunk)"),
    # --- image address localization (AddressCLIP and the CLIP baselines) ---
    "addressclip": ("methods.addressclip.adapters:AddressCLIP",
                    "AddressCLIP (ECCV 2024): CLIP fine-tuned on address + caption + geography losses"),
    "clip-address": ("methods.addressclip.adapters:CLIPAddress", "CLIP fine-tuned on the address loss alone"),
    "clip-zeroshot": ("methods.addressclip.adapters:CLIPZeroShot",
                      "CLIP zero-shot over the candidate addresses (official CLIP with --weights; Kotka CLIP on CPU)"),
    "coop": ("methods.addressclip.adapters:CoOp",
             "CoOp: learned prompt context, frozen pretrained CLIP towers (the Kotka CLIP on the CPU)"),
    "maple": ("methods.addressclip.adapters:MaPLe",
              "MaPLe: deep prompts in both frozen towers, image prompts coupled to text prompts (ViT towers)"),
    "cocoop": ("methods.addressclip.adapters:CoCoOp",
               "CoCoOp: CoOp's context shifted per image by a meta-net (candidates encoded per query)"),
    # --- place recognition + reverse geocoding ---
    "netvlad": ("methods.vpr.adapters:NetVLADMethod", "NetVLAD (triplet, faiss hard negatives) -> geocoder"),
    "sare": ("methods.vpr.adapters:SAREMethod", "NetVLAD trained with SARE (joint|ind) -> geocoder"),
    "gem": ("methods.vpr.adapters:GeMMethod", "ResNet conv4 + GeM (triplet, faiss hard negatives) -> geocoder"),
    "cosplace": ("methods.vpr.adapters:CosPlaceMethod", "CosPlace (CosFace over UTM/heading groups) -> geocoder"),
    "eigenplaces": ("methods.vpr.adapters:EigenPlacesMethod",
                    "EigenPlaces (CosFace on lateral and frontal views of each cell) -> geocoder"),
    "mixvpr": ("methods.vpr.adapters:MixVPRMethod", "MixVPR (MultiSimilarity + miner) -> geocoder"),
    "salad": ("methods.vpr.adapters:SALADMethod", "DINOv2-layout ViT + SALAD (MultiSimilarity) -> geocoder"),
    # --- geocell classification -> coordinates -> reverse geocoding, and the plain classification control ---
    "pigeon": ("methods.classification.pigeon:Pigeon",
               "PIGEON: semantic geocells, haversine label smoothing, location-cluster refinement -> geocoder"),
    "subst-classifier": ("methods.classification.subst:SubStreetClassifier",
                         "the backbone with a linear head over the candidate sub-streets (cross-entropy)"),
}

# Named method sets for --methods. `headline` is what `python -m benchmark run` runs by default: the
# references, AddressCLIP and CLIP + address, and the best method of the other two families in the CPU presets
# (measured on helsinki v2, seed 0, SSA@1, 2026-12-05: retrieval densevlad 49.2 ahead of anyloc 44.1, mixvpr 42.3,
# eigenplaces 39.7, cosplace 37.2, salad 27.3; classification subst-classifier 56.9); `--methods all` runs every
# registered method.
SETS: dict[str, list[str]] = {
    "headline": ["oracle-gps", "prior", "tiny-images", "addressclip", "clip-address", "densevlad", "subst-classifier"],
}
