#!/usr/bin/env bash
# Builds and pushes the flex template's launcher image (deploy/Dockerfile.launcher: the CPU
# worker image plus Dataflow's Python template launcher) and writes the template spec file
# with `gcloud dataflow flex-template build`.
#
# Usage: deploy/build_flex_template.sh REPOSITORY TAG BUCKET
#   REPOSITORY, TAG: those given to deploy/build_images.sh, which must have pushed the CPU and
#   GPU worker images first (REPOSITORY/pairsift-worker-cpu:TAG, .../pairsift-worker-gpu:TAG);
#   the launcher image starts FROM the CPU one and names both as the run's default images
#   BUCKET: the spec file is written to gs://BUCKET/templates/pairsift.json (TEMPLATE_PATH
#   overrides the whole path)
# Prints the launcher image and the spec file's path for `gcloud dataflow flex-template run`
# (docs/dataflow.md).
set -euo pipefail

if [ $# -ne 3 ]; then
  sed -n '2,/^set -euo/{/^#/p}' "$0" >&2
  exit 2
fi
REPOSITORY=${1%/} TAG=$2 BUCKET=${3#gs://}
BUCKET=${BUCKET%/}
cd "$(dirname "$0")/.."

CPU_IMAGE="$REPOSITORY/pairsift-worker-cpu:$TAG"
GPU_IMAGE="$REPOSITORY/pairsift-worker-gpu:$TAG"
LAUNCHER_IMAGE="$REPOSITORY/pairsift-launcher:$TAG"
TEMPLATE_PATH=${TEMPLATE_PATH:-gs://$BUCKET/templates/pairsift.json}
# the launcher VM is x86-64 like the default workers: build for it wherever this runs
PLATFORM=${PLATFORM:-linux/amd64}

docker build --platform "$PLATFORM" -f deploy/Dockerfile.launcher \
  --build-arg WORKER_IMAGE="$CPU_IMAGE" --build-arg GPU_WORKER_IMAGE="$GPU_IMAGE" \
  -t "$LAUNCHER_IMAGE" .
docker push "$LAUNCHER_IMAGE"

gcloud dataflow flex-template build "$TEMPLATE_PATH" \
  --image "$LAUNCHER_IMAGE" \
  --sdk-language PYTHON \
  --metadata-file deploy/flex_template_metadata.json

echo "LAUNCHER_IMAGE=$LAUNCHER_IMAGE"
echo "TEMPLATE_PATH=$TEMPLATE_PATH"
