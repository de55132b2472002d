#!/usr/bin/env bash
# Builds and pushes the three images a Dataflow run uses: the CPU worker image, the GPU worker
# image (both from deploy/Dockerfile) and the driver image (deploy/Dockerfile.driver).
#
# Usage: deploy/build_images.sh REPOSITORY TAG
#   REPOSITORY: an Artifact Registry Docker repository, REGION-docker.pkg.dev/PROJECT/REPO
#   (once: gcloud artifacts repositories create REPO --repository-format=docker
#    --location=REGION; gcloud auth configure-docker REGION-docker.pkg.dev)
# GPU_TORCH_INDEX picks the GPU image's torch build (default: PyPI's, which is built with
# CUDA); it must be a CUDA version the NVIDIA driver Dataflow installs supports.
# Prints the three image names for deploy/launch_dataflow.sh and the Cloud Run job. The flex
# template (the supported launch) is built from these images afterwards:
# deploy/build_flex_template.sh REPOSITORY TAG BUCKET.
set -euo pipefail

if [ $# -ne 2 ]; then
  sed -n '2,/^set -euo/{/^#/p}' "$0" >&2
  exit 2
fi
REPOSITORY=${1%/} TAG=$2
cd "$(dirname "$0")/.."

CPU_IMAGE="$REPOSITORY/pairsift-worker-cpu:$TAG"
GPU_IMAGE="$REPOSITORY/pairsift-worker-gpu:$TAG"
DRIVER_IMAGE="$REPOSITORY/pairsift-driver:$TAG"
# Dataflow's worker VMs are x86-64 unless you ask for Arm: build for them wherever this runs
PLATFORM=${PLATFORM:-linux/amd64}
GPU_TORCH_INDEX=${GPU_TORCH_INDEX:-https://pypi.org/simple}

docker build --platform "$PLATFORM" -f deploy/Dockerfile \
  --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t "$CPU_IMAGE" .
docker build --platform "$PLATFORM" -f deploy/Dockerfile \
  --build-arg TORCH_INDEX="$GPU_TORCH_INDEX" -t "$GPU_IMAGE" .
docker build --platform "$PLATFORM" -f deploy/Dockerfile.driver \
  --build-arg WORKER_IMAGE="$CPU_IMAGE" --build-arg GPU_WORKER_IMAGE="$GPU_IMAGE" \
  -t "$DRIVER_IMAGE" .

for image in "$CPU_IMAGE" "$GPU_IMAGE" "$DRIVER_IMAGE"; do
  docker push "$image"
done
echo "CPU_WORKER_IMAGE=$CPU_IMAGE"
echo "GPU_WORKER_IMAGE=$GPU_IMAGE"
echo "DRIVER_IMAGE=$DRIVER_IMAGE"
