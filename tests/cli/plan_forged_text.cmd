plan tests/cli/data/forged.yaml -p $'target=prod-db\r\e[2Kstaging-db|x'
