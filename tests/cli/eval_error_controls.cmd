eval "error(\"erased\\27[2K\\rforged\")"
