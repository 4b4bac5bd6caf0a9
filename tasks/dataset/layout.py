"""Names, headers and the split of the real VISEM-Tracking dataset (see FORMAT.md).

Every module that reads or writes the on-disk layout takes its names from here, so the
reader, the validator and the synthetic twin cannot drift apart.
"""

from __future__ import annotations

import re

IMAGE_WIDTH = 640
IMAGE_HEIGHT = 480

CLASS_NAMES = ("sperm", "cluster", "small_or_pinhead")
# Paper colours (BGR for OpenCV): sperm red, cluster green, pinhead blue.
CLASS_COLOURS_BGR = ((0, 0, 255), (0, 200, 0), (255, 0, 0))

TRAIN_DIR = "VISEM_Tracking_Train_v4"
VIDEOS_DIR = "Train"
CLIPS_OTHER_DIR = "visem-extracted-30s-excluding-selected-20"
CLIPS_REST_DIR = "visem-extracted-30s-selected-20-videos-excluding-first-30s"
COUNTS_CSV = "sperm_counts_per_frame.csv"
COUNTS_HEADER = ("frame_name", "sperm_count", "cluster_count", "small_or_pinhead_count")

# The 20 annotated videos and the authors' split.
ANNOTATED_IDS = (11, 12, 13, 14, 15, 19, 21, 22, 23, 24, 29, 30, 35, 36, 38, 47, 52, 54, 60, 82)
OFFICIAL_VAL_IDS = (52, 54, 60, 82)
OFFICIAL_TRAIN_IDS = tuple(i for i in ANNOTATED_IDS if i not in OFFICIAL_VAL_IDS)
# VISEM has 85 participants numbered 1-85; the 65 without annotations have only clips.
OTHER_IDS = tuple(i for i in range(1, 86) if i not in ANNOTATED_IDS)

TRACK_ID_LENGTH = 25  # LabelBox ids, e.g. ckz3v9nzv00033867jsekqdcl

CLIP_NAME_RE = re.compile(r"^(?P<id>\d+)_(?P<start>\d+)_(?P<stop>\d+)\.mp4$")
IMAGE_NAME_RE = re.compile(r"^(?P<id>\d+)_frame_(?P<frame>\d+)\.jpg$")
LABEL_NAME_RE = re.compile(r"^(?P<id>\d+)_frame_(?P<frame>\d+)\.txt$")
FTID_NAME_RE = re.compile(r"^(?P<id>\d+)_frame_(?P<frame>\d+)_with_ftid\.txt$")


def frame_item(source: int | str, frame: int) -> str:
    """`<video or clip>_frame_<n>`: how a frame is named everywhere (images, labels, review items)."""
    return f"{source}_frame_{int(frame)}"


def split_item(item: str) -> tuple[str, int]:
    """`<clip>_frame_<n>` -> (clip, n)."""
    clip, _, frame = item.rpartition("_frame_")
    return clip, int(frame)


def image_name(video_id: int | str, frame: int) -> str:
    return f"{frame_item(video_id, frame)}.jpg"


def label_name(video_id: int | str, frame: int) -> str:
    return f"{frame_item(video_id, frame)}.txt"


def ftid_name(video_id: int | str, frame: int) -> str:
    return f"{frame_item(video_id, frame)}_with_ftid.txt"


def clip_name(video_id: int | str, start_s: int, stop_s: int) -> str:
    return f"{video_id}_{start_s}_{stop_s}.mp4"


# Clinical CSVs: exact real headers, UTF-8 (note "²", "⁶", "Müllerian" and the double space).
PARTICIPANT_CSV = "participant_related_data_Train.csv"
SEMEN_CSV = "semen_analysis_data_Train.csv"
HORMONES_CSV = "sex_hormones_Train.csv"
FA_SERUM_CSV = "fatty_acids_serum_Train.csv"
FA_SPERM_CSV = "fatty_acids_spermatoza_Train.csv"

PROGRESSIVE_COL = "Progressive motility (%)"
NON_PROGRESSIVE_COL = "Non progressive sperm motility (%)"
IMMOTILE_COL = "Immotile sperm (%)"
MOTILITY_COLS = (PROGRESSIVE_COL, NON_PROGRESSIVE_COL, IMMOTILE_COL)

CLINICAL_HEADERS: dict[str, tuple[str, ...]] = {
    PARTICIPANT_CSV: (
        "ID",
        "Abstinence time(days)",
        "Body mass index (kg/m²)",
        "Age (years)",
    ),
    SEMEN_CSV: (
        "ID",
        "Sperm concentration (x10⁶/mL)",
        "Total sperm count (x10⁶)",
        "Ejaculate volume (mL)",
        "Sperm vitality (%)",
        "Normal spermatozoa (%)",
        "Head defects (%)",
        "Midpiece and neck defects (%)",
        "Tail defects (%)",
        "Cytoplasmic droplet (%)",
        "Teratozoospermia index",
        PROGRESSIVE_COL,
        NON_PROGRESSIVE_COL,
        IMMOTILE_COL,
        "High DNA stainability, HDS (%)",
        "DNA fragmentation index, DFI (%)",
    ),
    HORMONES_CSV: (
        "ID",
        "Seminal plasma anti-Müllerian hormone (AMH) (pmol/L)",
        "Serum total testosterone (nmol/L)",
        "Serum oestradiol (nmol/L)",
        "Serum sex hormone-binding globulin, SHBG (nmol/L)",
        "Serum follicle-stimulating hormone, FSH (IU/L)",
        "Serum Luteinizing hormone, LH (IU/L)",
        "Serum inhibin B (ng/L)",
        "Serum anti-Müllerian hormone, AMH (pmol/L)",
    ),
    FA_SERUM_CSV: (
        "ID",
        "Serum C14:0 (myristic acid)",
        "Serum C16:0 (palmitic acid)",
        "Serum C16:1 (palmitoleic acid)",
        "Serum C18:0 (stearic acid)",
        "Serum C18:1 n-9 (oleic acid)",
        "Serum total C18:1",
        "Serum C18:2 n-6 (linoleic acid, LA)",
        "Serum C18:3 n-6 (gamma-linoleic acid, GLA)",
        "Serum C20:1 n-9",
        "Serum C20:2 n-6",
        "Serum C20:3 n-6",
        "Serum C20:4 n-6",
        "Serum C20:5 n-3  (eicosapentaenoic acid, EPA)",
        "Serum C22:5 n-3 (docosapentaenoic acid, DPA)",
        "Serum C22:6 n-3 (docosahexaenoic acid, DHA)",
    ),
    FA_SPERM_CSV: (
        "ID",
        "Sperm C14:0 (myristic acid)",
        "Sperm C15:0 (pentadecanoic acid)",
        "Sperm C16:0 (palmitic acid)",
        "Sperm C16:1 n-7 (palmitoleic acid)",
        "Sperm C17:0",
        "Sperm C18:0 (stearic acid)",
        "Sperm C18:1 trans n-6 to n-11",
        "Sperm C18:1 n-9 (oleic acid)",
        "Sperm C18:1 n-7 to n-11",
        "Sperm C18:2 n-6 (Linoleic acid, LA)",
        "Sperm C20:0",
        "Sperm C18:3 n-6 (gamma-linoleic acid, GLA)",
        "Sperm C18:3 n-3 (a-linoleic acid, ALA)",
        "Sperm C20:1 n-9",
        "Sperm C20:2 n-6",
        "Sperm C22:0",
        "Sperm C20:3 n-6",
        "Sperm C20:4 n-6 and C22:1 n-9 combined",
        "Sperm C20:5 n-3 (eicosapentaenoic acid, EPA)",
        "Sperm C24:0",
        "Sperm C24:1 n-9",
        "Sperm C22:5 n-3 (docosapentaenoic acid, DPA)",
        "Sperm C22:6,n3 (docosahexaenoic acid, DHA)",
    ),
}
CLINICAL_CSVS = tuple(CLINICAL_HEADERS)

# Outside the real layout: the synthetic twin's ground truth, never read by training.
TRUTH_DIR = "_truth"

# Frames per annotated video (FORMAT.md): 1470, except 35 and 52 (1440) and 82 (1500).
REAL_FRAMES = {vid: {35: 1440, 52: 1440, 82: 1500}.get(vid, 1470) for vid in ANNOTATED_IDS}
