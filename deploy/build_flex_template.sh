#!/usr/bin/env bash
# Build the image and register the flex template.
# Usage: deploy/build_flex_template.sh IMAGE gs://BUCKET/templates/pairsift.json
set -euo pipefail
IMAGE=$1 TEMPLATE=$2
cd "$(dirname "$0")/.."
docker build -f deploy/Dockerfile -t "$IMAGE" .
docker push "$IMAGE"
gcloud dataflow flex-template build "$TEMPLATE" \
  --image "$IMAGE" --sdk-language PYTHON --metadata-file deploy/flex_template_metadata.json
