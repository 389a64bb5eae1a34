package peer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// Authentication is a challenge–response over a shared secret, both ways
// [PROTOCOL-3]: the owner proves nothing by accepting a connection and the
// follower proves nothing by dialling; each answers the other's fresh nonce
// with an HMAC-SHA256 under the secret, so a recorded conversation cannot
// be replayed and the secret never crosses the wire. TLS, when configured,
// adds confidentiality; the secret still decides who may replicate.

// Labels keep a MAC computed for one purpose from being valid for another.
const (
	labelHello   = "outpost-peer/1 hello"
	labelWelcome = "outpost-peer/1 welcome"
)

func newNonce() [nonceLen]byte {
	var n [nonceLen]byte
	_, _ = rand.Read(n[:]) // crypto/rand.Read never returns an error (Go 1.24+)
	return n
}

func macOf(secret []byte, label string, nonce [nonceLen]byte, fields ...string) [macLen]byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	h.Write(nonce[:])
	for _, f := range fields {
		// Length-prefixed, so that ("ab","c") and ("a","bc") differ.
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	var out [macLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

// helloMAC is the follower's answer to the owner's nonce [PROTOCOL-3.2].
func helloMAC(secret []byte, ownerNonce [nonceLen]byte, site, follower string, mode byte) [macLen]byte {
	return macOf(secret, labelHello, ownerNonce, site, follower, string([]byte{mode}))
}

// welcomeMAC is the owner's answer to the follower's nonce, binding its
// name and epoch [PROTOCOL-3.3].
func welcomeMAC(secret []byte, followerNonce [nonceLen]byte, owner string, epoch uint64) [macLen]byte {
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	return macOf(secret, labelWelcome, followerNonce, owner, string(e[:]))
}

func macEqual(a, b [macLen]byte) bool { return hmac.Equal(a[:], b[:]) }
