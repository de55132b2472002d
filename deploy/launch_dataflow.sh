#!/usr/bin/env bash
# Runs the pairsift driver against Google Cloud Dataflow: pass 1 (the towers) on GPU workers,
# every other job on CPU workers. The driver runs here, in the foreground, until the last job
# ends; run it where it can stay up that long (the driver image, docs/dataflow.md).
#
# Usage: deploy/launch_dataflow.sh PROJECT REGION BUCKET INPUT OUTPUT [pairsift or Beam flags]
#
# Worker images (deploy/build_images.sh prints both; the driver image has them set):
#   GPU_WORKER_IMAGE   pass 1's image (torch with CUDA)
#   CPU_WORKER_IMAGE   every other job's image (CPU torch)
# Sizing, each with a default:
#   GPU_TYPE=nvidia-l4 GPU_COUNT=1 GPU_MACHINE_TYPE=g2-standard-8 MAX_GPU_WORKERS=16
#   CPU_MACHINE_TYPE=n2-highmem-8 MAX_CPU_WORKERS=100 DISK_SIZE_GB=50
#   JOB_NAME=pairsift-<UTC time>   (each job is named JOB_NAME-<job>, e.g. ...-pass-1)
# A G2 machine type comes with its GPUs: GPU_COUNT must be the count it carries (1 for
# g2-standard-4 to -16 and -32). Flags after OUTPUT go to `pairsift run` as they are.
set -euo pipefail

if [ $# -lt 5 ]; then
  sed -n '2,/^set -euo/{/^#/p}' "$0" >&2
  exit 2
fi
PROJECT=$1 REGION=$2 BUCKET=$3 INPUT=$4 OUTPUT=$5
shift 5
: "${GPU_WORKER_IMAGE:?set GPU_WORKER_IMAGE (pass 1 worker image, from deploy/build_images.sh)}"
: "${CPU_WORKER_IMAGE:?set CPU_WORKER_IMAGE (CPU worker image, from deploy/build_images.sh)}"
GPU_TYPE=${GPU_TYPE:-nvidia-l4}
GPU_COUNT=${GPU_COUNT:-1}
GPU_MACHINE_TYPE=${GPU_MACHINE_TYPE:-g2-standard-8}
MAX_GPU_WORKERS=${MAX_GPU_WORKERS:-16}
CPU_MACHINE_TYPE=${CPU_MACHINE_TYPE:-n2-highmem-8}
MAX_CPU_WORKERS=${MAX_CPU_WORKERS:-100}
DISK_SIZE_GB=${DISK_SIZE_GB:-50}
JOB_NAME=${JOB_NAME:-pairsift-$(date -u +%Y%m%d-%H%M%S)}

# The GPU settings are pass 1's; pairsift gives every other job the --cpu_* ones and drops the
# accelerator from them (pipeline/options.py, job_options).
exec pairsift run --input "$INPUT" --output "$OUTPUT" \
  --runner DataflowRunner --project "$PROJECT" --region "$REGION" \
  --temp_location "gs://$BUCKET/tmp" --staging_location "gs://$BUCKET/staging" \
  --job_name "$JOB_NAME" \
  --experiments use_runner_v2 \
  --disk_size_gb "$DISK_SIZE_GB" \
  --sdk_container_image "$GPU_WORKER_IMAGE" \
  --machine_type "$GPU_MACHINE_TYPE" --max_num_workers "$MAX_GPU_WORKERS" \
  --dataflow_service_options "worker_accelerator=type:$GPU_TYPE;count:$GPU_COUNT;install-nvidia-driver" \
  --cpu_sdk_container_image "$CPU_WORKER_IMAGE" \
  --cpu_machine_type "$CPU_MACHINE_TYPE" --cpu_max_num_workers "$MAX_CPU_WORKERS" \
  "$@"
