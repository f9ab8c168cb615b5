plan tests/redis/plan.yaml
