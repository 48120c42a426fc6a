# Providers are pinned to a floor and the next major: a minor release may add
# attributes but not break these files. No lock file is committed because
# `terraform init` cannot reach the registry where this module is developed;
# the first `init` in Cloud Build or on a workstation writes one (see
# docs/deploy.md, "Versions").
terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  # State lives in a GCS bucket named at `terraform init
  # -backend-config=bucket=...`; docs/deploy.md creates it once.
  backend "gcs" {
    prefix = "calltrack"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
