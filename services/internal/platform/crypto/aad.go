package crypto

import "encoding/binary"

// BindAAD encodes parts as associated data, canonically: a uint32 count, then each part as a
// uint32 length and its bytes (big-endian). Unlike concatenation it is unambiguous, so no two
// different part lists produce the same bytes. Put a purpose label first (see MessageFieldAAD).
func BindAAD(parts ...string) []byte {
	n := 4
	for _, p := range parts {
		n += 4 + len(p)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// MessageFieldAAD binds a record to one field of one message of one thread, so that the
// ciphertext of a body cannot be moved to another message, thread or field.
func MessageFieldAAD(threadID, messageID, field string) []byte {
	return BindAAD("securemsg.message.field.v1", threadID, messageID, field)
}

// AttachmentAAD binds an attachment object's stream to its attachment id and thread.
func AttachmentAAD(threadID, attachmentID string) []byte {
	return BindAAD("securemsg.attachment.v1", threadID, attachmentID)
}
