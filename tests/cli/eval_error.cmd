eval "error(\"boom\")"
