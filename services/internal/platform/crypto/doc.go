// Package crypto seals PHI at rest: small records (message subjects and bodies, file names,
// contact details) in a versioned AES-256-GCM envelope, and blobs (attachment bytes) in a
// segmented streaming AEAD that encrypts and decrypts in bounded memory and serves range reads.
//
// The package never sees Vault: callers hand it a 32-byte data-encryption key (DEK) that
// services/internal/platform/keys unwrapped, and store only the wrapped form beside the data.
// Both formats start with a version byte so that a later format can be introduced without
// migrating old rows or objects: readers dispatch on the byte, writers always use the newest.
//
// # Associated data
//
// Every ciphertext is bound to where it belongs by associated data (AAD) the caller passes to
// both seal and open. BindAAD encodes its parts canonically so that no two different lists of
// parts share an encoding ("ab","c" and "a","bc" differ):
//
//	uint32 big-endian number of parts
//	for each part: uint32 big-endian length || the part's bytes
//
// MessageFieldAAD(thread, message, field) is the binding the messaging service uses; its first
// part names the purpose so that a binding made for one kind of record never fits another.
//
// # Record envelope, version 1
//
// SealRecord output, all integers big-endian:
//
//	offset   size   field
//	0        1      format version = 0x01
//	1        1      L, length of the key reference (0..255)
//	2        L      key reference: opaque to this package; names the DEK the record is sealed
//	                under (e.g. a DEK id) so a reader can find the wrapped key before opening
//	2+L      12     nonce, random (96 bits; a DEK seals far fewer than 2^32 records)
//	14+L     n+16   AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag
//
// The GCM associated data is bytes [0, 2+L) of the envelope (version and key reference, which
// are self-delimiting) followed by the caller's AAD, so neither the header nor the binding can
// be changed without the open failing. Overhead: 30+L bytes per record.
//
// # Stream format, version 1 (STREAM construction, after Tink's AES-GCM-HKDF streaming AEAD)
//
// Header, 44 bytes:
//
//	offset   size   field
//	0        1      format version = 0x01
//	1        4      S, plaintext bytes per segment (65536 for new objects; 64..1 MiB accepted)
//	5        32     salt, random
//	37       7      nonce prefix, random
//
// Then segments 0..N-1, where N = max(1, ceil(plaintext size / S)). Every segment but the last
// holds exactly S plaintext bytes; the last holds 1..S bytes (0 only when the object is empty).
// A segment is its AES-256-GCM ciphertext followed by its 16-byte tag (S+16 bytes when full).
//
// The segment key is a per-object subkey, HKDF-SHA256(secret = DEK, salt = salt, info =
// "securemsg stream v1" || header || BindAAD-encoded caller AAD), 32 bytes: a DEK reused by
// mistake still yields a fresh key per object, and any change to the header or the binding
// yields a different key. The nonce of segment i is
//
//	nonce prefix (7 bytes) || uint32 big-endian i || last-segment flag (0x01 on the last, else 0x00)
//
// so truncating, reordering, duplicating or appending segments, flipping any bit or grafting the
// header of another object all fail authentication. Expansion is 44 bytes plus 16 per segment:
// 0.0244% with 64 KiB segments. CiphertextSize and PlaintextSize convert between the two.
//
// # Errors
//
// Every failure to authenticate, and every malformed input, is ErrNotAuthentic (callers map it
// to codes.DataLoss); an unknown version byte is ErrUnsupportedVersion. No plaintext is ever
// released from a segment or record that did not verify, and a stream reader verifies the last
// segment when it opens, so its Size is authenticated before any byte is read.
package crypto
