eval -p env=dev 1
