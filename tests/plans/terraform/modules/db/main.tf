terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

resource "aws_db_instance" "this" {
  identifier          = "orders"
  engine              = "postgres"
  instance_class      = "db.t3.micro"
  skip_final_snapshot = true
}
