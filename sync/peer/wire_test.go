package peer

import (
	"bytes"
	"errors"
	"testing"
)

func sampleMessages() []message {
	return []message{
		&challenge{Version: Version, Nonce: newNonce()},
		&hello{Version: Version, Site: "farm", Follower: "pi-b", Nonce: newNonce()},
		&welcome{Owner: "pi-a", Epoch: 7, Topics: []topicInfo{{"telemetry", 4}, {"events", 1}}},
		&fetch{Epoch: 7, MaxBytes: 1 << 20, MaxWaitMs: 500, Parts: []fetchPart{{"telemetry", 3, 100, 2}}},
		&fetchResp{Epoch: 7, Parts: []respPart{{Topic: "telemetry", Partition: 3, HW: 90, End: 120, History: []epochEntry{{1, 0}, {2, 50}}, Base: 100, Batches: [][]byte{{0x80}, {1, 2, 3}}}}},
		&errorMsg{Code: codeAuth, Message: "authentication failed"},
	}
}

// FuzzDecodeMessage: the decoder never panics on any frame, and a frame
// that decodes encodes back to the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := appendFrame(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := newFrameReader(bytes.NewReader(b)).read()
		if err != nil {
			return
		}
		out, err := appendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		n := len(out)
		if n > len(b) || !bytes.Equal(out, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:min(len(b), n)], out)
		}
	})
}

func TestFrameRefusesBadInput(t *testing.T) {
	good, _ := appendFrame(nil, sampleMessages()[3])
	cases := map[string][]byte{
		"huge_length":   {0xff, 0xff, 0xff, 0xff, typeFetch},
		"zero_length":   {0, 0, 0, 0, typeFetch},
		"unknown_type":  {0, 0, 0, 1, 99},
		"truncated":     good[:len(good)-3],
		"trailing_byte": append(append([]byte{}, good[:4]...), good[4:]...),
		"lying_count":   {0, 0, 0, 19, typeFetch, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff},
	}
	// trailing_byte: one byte more than the message, counted in the length.
	tb := cases["trailing_byte"]
	tb = append(tb, 0)
	tb[3]++
	cases["trailing_byte"] = tb
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := newFrameReader(bytes.NewReader(b)).read()
			if err == nil {
				t.Fatal("decoded")
			}
			if name != "truncated" && !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		})
	}
}
