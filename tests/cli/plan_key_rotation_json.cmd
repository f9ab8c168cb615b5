plan runbooks/key-rotation.yaml --format json
