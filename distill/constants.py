"""What the whole package shares: rates, horizons, cameras, image statistics, embedding size, and
the names the command line offers.

A leaf: it imports nothing (of ours or anyone's), so every layer can take its numbers from here.
The on-disk formats that use them are documented in docs/formats.md (``distill.data.formats``
re-exports the ones it documents).
"""

DT = 0.1  # seconds between poses, history and future (10 Hz)
HISTORY_STEPS = 16  # ego poses at t0 - 1.5 s ... t0
FUTURE_STEPS = 64  # teacher poses at t0 + 0.1 s ... t0 + 6.4 s

# Camera order of every frames array and of the batch contract.
CAMERAS = (
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
)
NUM_CAMERAS = len(CAMERAS)
NUM_FRAMES = 4  # per camera, at t0 + FRAME_OFFSETS_US
FRAME_OFFSETS_US = (-300_000, -200_000, -100_000, 0)
FRAME_CHANNELS = 3 * NUM_FRAMES  # a camera's frames stacked as channels: t0-0.3 s RGB ... t0 RGB
DEFAULT_T0_US = 5_100_000  # the present of a clip, us from its start

# Per RGB channel, in [0, 1] pixel units: what the frames are normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EMBED_DIM = 384  # the teacher's reasoning embedding (all-MiniLM-L6-v2)

# Names the command line offers, defined here so the parsers import no implementation
# (distill.models.config, distill.ops and distill.datasets check theirs against these).
MODEL_SIZES = ("tiny", "110m", "500m")  # student presets (distill.models.config)
ROLLOUTS = ("fused", "reference")  # unicycle rollout implementations (distill.ops)
BENCHMARK_INPUT_TYPES = {"nuscenes": "raster", "argoverse2": "vector"}  # what each one feeds
# Estimators of the speed at t0 and of the trajectory -> actions inverse (distill.kinematics):
# ours, or the teacher's (Alpamayo-R1's, reproduced); "auto" = the teacher's when the labels'
# provenance names Alpamayo-R1, else ours (docs/teacher_kinematics.md).
KINEMATICS = ("distill", "teacher")
KINEMATICS_CHOICES = ("auto", *KINEMATICS)
ACTION_STATS_SOURCES = ("labels", "teacher")  # where the action normalisation comes from
