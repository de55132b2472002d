#!/usr/bin/env bash
# Run pairsift on Google Cloud Dataflow with the worker image built from deploy/Dockerfile.
# Usage: deploy/launch_dataflow.sh PROJECT REGION BUCKET IMAGE INPUT OUTPUT [extra pairsift/Beam flags]
set -euo pipefail
PROJECT=$1 REGION=$2 BUCKET=$3 IMAGE=$4 INPUT=$5 OUTPUT=$6
shift 6
exec pairsift run \
  --input "$INPUT" --output "$OUTPUT" \
  --runner DataflowRunner --project "$PROJECT" --region "$REGION" \
  --temp_location "gs://$BUCKET/tmp" --staging_location "gs://$BUCKET/staging" \
  --sdk_container_image "$IMAGE" --sdk_location container \
  --experiments use_runner_v2 \
  "$@"
# GPU workers for the embed stage, e.g.:
#   --dataflow_service_options "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" \
#   --machine_type g2-standard-8
