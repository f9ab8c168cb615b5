validate runbooks/*.yaml tests/valid/*.yaml
