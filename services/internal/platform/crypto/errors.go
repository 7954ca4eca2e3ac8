package crypto

import "errors"

// ErrNotAuthentic is returned when a record or stream fails authentication or is malformed:
// wrong key, wrong associated data, flipped bits, truncation, reordering, duplicated or appended
// segments, or a header taken from another object. No plaintext accompanies it. Callers map it
// to codes.DataLoss. Errors wrapping it never carry key material or ciphertext.
var ErrNotAuthentic = errors.New("crypto: data is not authentic")

// ErrUnsupportedVersion is returned when a record or stream starts with a format version this
// build does not know (written by a newer build, or not a securemsg ciphertext at all).
var ErrUnsupportedVersion = errors.New("crypto: unsupported format version")

// ErrInvalidKey is returned when a DEK is not exactly KeySize bytes long.
var ErrInvalidKey = errors.New("crypto: invalid key length")
