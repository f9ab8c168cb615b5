graph runbooks/key-rotation.yaml --format mermaid
