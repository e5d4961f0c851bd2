# The configuration of tests/test_check_plan.py's real-Terraform test: planned with -refresh=false against the
# prior state in terraform.tfstate (no AWS API is called), then `terraform show -json`. Against that state:
#   module.db["prod"] is removed from the for_each   -> its database is destroyed (an orphan inside a module)
#   aws_db_instance.staging changes engine            -> replaced (delete, then create)
#   aws_db_instance.sandbox changes instance_class    -> updated in place
#   aws_s3_bucket.b drops "logs", adds "scratch"     -> one delete, one create (for_each addresses)

# no allowed_account_ids or assume_role: with them the provider asks AWS who it is. Each configuration's
# account is learned from the ARNs of the resources it manages
provider "aws" {
  alias                       = "prod"
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}

provider "aws" {
  alias                       = "staging"
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}

provider "aws" {
  alias                       = "sandbox"
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}

module "db" {
  source    = "./modules/db"
  for_each  = toset([])
  providers = { aws = aws.prod }
}

resource "aws_db_instance" "staging" {
  provider            = aws.staging
  identifier          = "orders"
  engine              = "mysql"
  instance_class      = "db.t3.micro"
  skip_final_snapshot = true
}

resource "aws_db_instance" "sandbox" {
  provider            = aws.sandbox
  identifier          = "orders"
  engine              = "postgres"
  instance_class      = "db.t3.small"
  skip_final_snapshot = true
}

resource "aws_s3_bucket" "b" {
  provider = aws.sandbox
  for_each = toset(["scratch"])
  bucket   = each.key == "logs" ? "shared-assets-555555555555" : "shared-${each.key}"
}
