# A secret printed base64-, hex-encoded or line by line (a PEM key) is redacted too, on the
# console and in the journal.
ENC_TOKEN=enc-Secret-Q7w9z ENC_KEY=$'-----BEGIN TEST KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END TEST KEY-----' run tests/exec/encodings.yaml
never: enc-Secret-Q7w9z
never: ZW5jLVNlY3JldC1RN3c5eg==
never: bmMtU2VjcmV0LVE3
never: 656e632d5365637265742d513777397a
never: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC
