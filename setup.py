from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="vadgpu",
    version="0.1.0",
    description="Video anomaly detection for fixed cameras: DALI decoding, CuPy pseudo-anomalies, memory autoencoders",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["vadgpu", "vadgpu.*"]),
    package_data={"vadgpu": ["kernels/cuda/*.cu", "configs/*.yaml"]},
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-learn",
        "nvidia-dali-cuda120",
        "cupy-cuda12x",
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
    extras_require={"test": ["pytest"], "tensorboard": ["tensorboard"]},
    entry_points={"console_scripts": ["vadgpu=vadgpu.cli.main:main"]},
)
