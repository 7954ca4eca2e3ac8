package crypto

import (
	"encoding/binary"
	"math"
)

// BindAAD encodes parts as associated data, canonically: a uint32 count, then each part as a
// uint32 length and its bytes (big-endian). Unlike concatenation it is unambiguous, so no two
// different part lists produce the same bytes. Put a purpose label first (see MessageFieldAAD).
// It panics on a part of 4 GiB or more (or as many parts), which a uint32 length cannot encode
// unambiguously; parts are labels and ids, so that is a programming error.
func BindAAD(parts ...string) []byte {
	n := 4
	for _, p := range parts {
		n += 4 + len(p)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, aadLength(len(parts)))
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, aadLength(len(p)))
		b = append(b, p...)
	}
	return b
}

// aadLength is n as the uint32 of BindAAD's encoding. Truncating instead would let two
// different part lists encode to the same bytes.
func aadLength(n int) uint32 {
	if n < 0 || uint64(n) > math.MaxUint32 {
		panic("crypto: BindAAD part or part count does not fit in 32 bits")
	}
	return uint32(n)
}

// MessageFieldAAD binds a record to one field of one message of one thread, so that the
// ciphertext of a body cannot be moved to another message, thread or field.
func MessageFieldAAD(threadID, messageID, field string) []byte {
	return BindAAD("securemsg.message.field.v1", threadID, messageID, field)
}

// PersonFieldAAD binds a record to one field of one person of the directory (their display
// name), so that a sealed name cannot be moved to another person.
func PersonFieldAAD(subject, field string) []byte {
	return BindAAD("securemsg.person.field.v1", subject, field)
}

// AttachmentAAD binds an attachment object's stream to its attachment id and thread.
func AttachmentAAD(threadID, attachmentID string) []byte {
	return BindAAD("securemsg.attachment.v1", threadID, attachmentID)
}
