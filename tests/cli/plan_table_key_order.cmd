plan tests/cli/data/table_order.yaml
