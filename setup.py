import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version lives in vadgpu/__init__.py (what `vadgpu --version` and checkpoints report); read, not imported.
VERSION = re.search(r'^__version__ = "([^"]+)"$', (HERE / "vadgpu" / "__init__.py").read_text(encoding="utf-8"),
                    re.MULTILINE).group(1)

setup(
    name="vadgpu",
    version=VERSION,
    description="Video anomaly detection for fixed cameras: DALI decoding, CuPy pseudo-anomalies, memory autoencoders",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",  # LICENSE; ultralytics, a dependency, is AGPL-3.0 (README, "License")
    python_requires=">=3.10",
    packages=find_packages(include=["vadgpu", "vadgpu.*"]),
    package_data={"vadgpu": ["kernels/cuda/*.cu", "weights/*.pt", "weights/*.json", "weights/*.csv"]},
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-learn",
        # DALI's wheels exist for Linux x86-64 only; elsewhere vadgpu runs with the torch loader (--loader torch)
        "nvidia-dali-cuda120; platform_system == 'Linux' and platform_machine == 'x86_64'",
        "cupy-cuda12x>=14",  # cupy.cuda.Stream.from_external (kernels on torch's stream)
        "nvidia-cuda-nvrtc-cu12",
        "ultralytics",
        "lap>=0.5.12",  # ultralytics' ByteTrack tracker imports it (else it tries to pip-install it at run time)
        "opencv-python<5",  # OpenCV 5 removed readNetFromDarknet (YOLOv3 in Darknet format)
        "av",
        "imageio-ffmpeg",
        "click>=8",
        "tqdm",
        "matplotlib",
        "pyyaml",
    ],
    extras_require={"test": ["pytest", "ruff"], "tensorboard": ["tensorboard"],
                    # `vadgpu export` and `vadgpu score --model FILE.onnx`
                    "export": ["onnx", "onnxruntime"],
                    # live scoring's --mqtt
                    "alarms": ["paho-mqtt>=2"]},
    entry_points={"console_scripts": ["vadgpu=vadgpu.cli.entry:main"]},
)
