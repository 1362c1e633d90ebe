package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// hdr builds a request header by hand: key, version, correlation id, then
// the raw bytes of the rest (client id length and bytes, tags).
func hdr(key, version int16, corr int32, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	return append(b, rest...)
}

func idLen(n int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// checkPrefixes feeds body to ParseRequestHeader one byte more at a time and
// checks that every prefix shorter than the header is ErrIncomplete and the
// full header gives want, as does the whole body.
func checkPrefixes(t *testing.T, body []byte, frameLen int32, maxID int, want RequestHeader) {
	t.Helper()
	for i := 0; i < want.Len; i++ {
		if _, err := ParseRequestHeader(body[:i], frameLen, maxID); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix of %d bytes (header is %d): err = %v, want ErrIncomplete", i, want.Len, err)
		}
	}
	for _, b := range [][]byte{body[:want.Len], body} {
		got, err := ParseRequestHeader(b, frameLen, maxID)
		if err != nil {
			t.Fatalf("parse %d bytes: %v", len(b), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parse %d bytes:\n got %+v\nwant %+v", len(b), got, want)
		}
	}
}

func TestParseRequestHeaderKmsg(t *testing.T) {
	ids := []*string{kmsg.StringPtr("cid"), kmsg.StringPtr(""), nil, kmsg.StringPtr(strings.Repeat("x", 300))}
	for key := int16(0); key <= MaxKnownKey; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil {
			continue
		}
		t.Run(kmsg.NameForKey(key), func(t *testing.T) {
			for v := int16(0); v <= req.MaxVersion(); v++ {
				req.SetVersion(v)
				for _, id := range ids {
					var opts []kmsg.RequestFormatterOpt
					if id != nil {
						opts = append(opts, kmsg.FormatterClientID(*id))
					}
					corr := int32(key)<<16 | int32(v)
					frame := kmsg.NewRequestFormatter(opts...).AppendRequest(nil, req, corr)
					if key == 7 && v == 0 {
						// kmsg's formatter stops after a v0 header, without
						// body or size; finish the frame by hand.
						frame = req.AppendTo(frame)
						binary.BigEndian.PutUint32(frame, uint32(len(frame)-SizeLen))
					}
					size := int32(binary.BigEndian.Uint32(frame))
					body := frame[SizeLen:]
					if int(size) != len(body) {
						t.Fatalf("kmsg frame size %d, body %d", size, len(body))
					}

					want := RequestHeader{APIKey: key, APIVersion: v, CorrelationID: corr, Version: kmsgHeaderVersion(req)}
					want.Len = len(body) - len(req.AppendTo(nil))
					if want.Version > 0 && id != nil {
						want.ClientID = []byte(*id)
					}
					checkPrefixes(t, body, size, 300, want)
					if !bytes.Equal(body[want.Len:], req.AppendTo(nil)) {
						t.Fatalf("v%d: body after header differs from kmsg's", v)
					}
				}
			}
		})
	}
}

func TestParseRequestHeader(t *testing.T) {
	tags := []byte{2, 0, 3, 'a', 'b', 'c', 7, 0} // two tags: 0 "abc" and 7 ""
	big := bytes.Repeat([]byte{'t'}, MaxTaggedLen)
	tests := []struct {
		name     string
		b        []byte
		frameLen int32 // 0: len(b)
		maxID    int
		want     RequestHeader
		err      error
	}{
		{
			name:  "v1 client id",
			b:     hdr(3, 4, 77, cat(idLen(3), []byte("cid"), []byte("body"))...),
			maxID: 10,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 77, ClientID: []byte("cid"), Version: 1, Len: 13},
		},
		{
			name:  "v1 null client id",
			b:     hdr(3, 4, 1, idLen(-1)...),
			maxID: 10,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1, Len: 10},
		},
		{
			name:  "v1 empty client id",
			b:     hdr(3, 4, 1, idLen(0)...),
			maxID: 0,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, ClientID: []byte{}, Version: 1, Len: 10},
		},
		{
			name:  "v1 client id at the limit",
			b:     hdr(0, 3, 1, cat(idLen(4), []byte("abcd"))...),
			maxID: 4,
			want:  RequestHeader{APIKey: 0, APIVersion: 3, CorrelationID: 1, ClientID: []byte("abcd"), Version: 1, Len: 14},
		},
		{
			name:  "v0 controlled shutdown",
			b:     hdr(7, 0, 9, 0xff, 0xff),
			want:  RequestHeader{APIKey: 7, APIVersion: 0, CorrelationID: 9, Version: 0, Len: 8},
			maxID: 10,
		},
		{
			name:  "v2 no tags",
			b:     hdr(0, 9, 5, cat(idLen(1), []byte("c"), []byte{0})...),
			maxID: 10,
			want:  RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 5, ClientID: []byte("c"), Version: 2, Len: 12},
		},
		{
			name:  "v2 tags skipped",
			b:     hdr(0, 9, 5, cat(idLen(1), []byte("c"), tags, []byte("body"))...),
			maxID: 10,
			want:  RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 5, ClientID: []byte("c"), Version: 2, Len: 11 + len(tags)},
		},
		{
			name:  "v2 tags of exactly MaxTaggedLen bytes",
			b:     hdr(0, 9, 5, cat(idLen(-1), []byte{1, 0, 0xfc, 0x01}, big[:MaxTaggedLen-4])...),
			maxID: 10,
			want:  RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 5, Version: 2, Len: 10 + MaxTaggedLen},
		},
		{
			name:  "unknown key uses v1",
			b:     hdr(1000, 0, 5, idLen(-1)...),
			maxID: 10,
			want:  RequestHeader{APIKey: 1000, APIVersion: 0, CorrelationID: 5, Version: 1, Len: 10},
		},
		{
			name:     "bytes past the frame are ignored",
			b:        hdr(3, 4, 1, cat(idLen(3), []byte("cid"))...),
			frameLen: 12,
			maxID:    10,
			want:     RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:      ErrClientIDOverrun,
		},
		{
			name:  "client id too long before its bytes arrive",
			b:     hdr(3, 4, 1, idLen(200)...),
			maxID: 100, frameLen: 1000,
			want: RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:  ErrClientIDTooLong,
		},
		{
			name:  "client id too long for a zero limit",
			b:     hdr(3, 4, 1, cat(idLen(1), []byte("x"))...),
			maxID: 0,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:   ErrClientIDTooLong,
		},
		{
			name:  "client id overruns the frame",
			b:     hdr(3, 4, 1, idLen(50)...),
			maxID: 100, frameLen: 20,
			want: RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:  ErrClientIDOverrun,
		},
		{
			name:  "client id length -2",
			b:     hdr(3, 4, 1, idLen(-2)...),
			maxID: 100,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:   ErrMalformedHeader,
		},
		{
			name:  "v1 header in a 9 byte frame",
			b:     hdr(3, 4, 1, 0),
			maxID: 100,
			want:  RequestHeader{APIKey: 3, APIVersion: 4, CorrelationID: 1, Version: 1},
			err:   ErrMalformedHeader,
		},
		{
			name:  "frame below the minimum",
			b:     hdr(3, 4, 1)[:7],
			maxID: 100,
			err:   ErrFrameTooSmall,
		},
		{
			name:  "v2 tag count missing at frame end",
			b:     hdr(0, 9, 1, idLen(-1)...),
			maxID: 100,
			want:  RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:   ErrMalformedHeader,
		},
		{
			name:  "v2 tag runs past the frame",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{1, 0, 5, 'a'})...),
			maxID: 100,
			want:  RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:   ErrMalformedHeader,
		},
		{
			name:  "v2 tag runs past the buffer but not the frame",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{1, 0, 5, 'a'})...),
			maxID: 100, frameLen: 100,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrIncomplete,
		},
		{
			name:  "v2 uvarint over five bytes",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01})...),
			maxID: 100, frameLen: 100,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrMalformedHeader,
		},
		{
			name:  "v2 uvarint over 32 bits",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{0xff, 0xff, 0xff, 0xff, 0x10})...),
			maxID: 100, frameLen: 100,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrMalformedHeader,
		},
		{
			name:  "v2 tag count over the cap",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{0x81, 0x01})...),
			maxID: 100, frameLen: 10000,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrMalformedHeader,
		},
		{
			name:  "v2 tag longer than the cap",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{1, 0, 0x81, 0x02})...),
			maxID: 100, frameLen: 10000,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrMalformedHeader,
		},
		{
			name:  "v2 tags one byte over the cap",
			b:     hdr(0, 9, 1, cat(idLen(-1), []byte{1, 0, 0xfd, 0x01}, big)...),
			maxID: 100, frameLen: 10000,
			want: RequestHeader{APIKey: 0, APIVersion: 9, CorrelationID: 1, Version: 2},
			err:  ErrMalformedHeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frameLen := tt.frameLen
			if frameLen == 0 {
				frameLen = int32(len(tt.b))
			}
			got, err := ParseRequestHeader(tt.b, frameLen, tt.maxID)
			if tt.err != nil {
				if err != tt.err {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("fields on error:\n got %+v\nwant %+v", got, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			checkPrefixes(t, tt.b, frameLen, tt.maxID, tt.want)
			if tt.want.Len > maxHeaderLen(tt.maxID) {
				t.Errorf("Len %d over maxHeaderLen(%d) = %d", tt.want.Len, tt.maxID, maxHeaderLen(tt.maxID))
			}
		})
	}
}

func TestParseRequestHeaderAliases(t *testing.T) {
	b := hdr(3, 4, 1, cat(idLen(3), []byte("cid"))...)
	h, err := ParseRequestHeader(b, int32(len(b)), 10)
	if err != nil {
		t.Fatal(err)
	}
	b[10] = 'C'
	if string(h.ClientID) != "Cid" {
		t.Fatalf("ClientID %q does not alias the buffer", h.ClientID)
	}
	if cap(h.ClientID) != 3 {
		t.Fatalf("ClientID cap %d lets an append overwrite the frame", cap(h.ClientID))
	}
}

func TestParseRequestHeaderDoesNotAllocate(t *testing.T) {
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("client")).AppendRequest(nil, &kmsg.ProduceRequest{Version: 11}, 42)
	body := frame[SizeLen:]
	size := int32(len(body))
	for _, n := range []int{len(body), 5, 11, 14} { // whole, and prefixes that are incomplete
		allocs := testing.AllocsPerRun(100, func() {
			_, _ = ParseRequestHeader(body[:n], size, 100)
			_, _ = ParseRequestHeader(body[:n], size, 1) // client id too long
		})
		if allocs != 0 {
			t.Errorf("%d bytes: %v allocations per run", n, allocs)
		}
	}
}

func TestResponseHeaderLen(t *testing.T) {
	corr := []byte{0, 0, 0, 9}
	tests := []struct {
		name         string
		key, version int16
		b            []byte
		want         int
		err          error
	}{
		{"v0 response", 3, 8, cat(corr, []byte{1, 2, 3}), 4, nil},
		{"v1 response no tags", 3, 9, cat(corr, []byte{0, 1, 2}), 5, nil},
		{"v1 response with tags", 0, 13, cat(corr, []byte{1, 4, 2, 'a', 'b', 9}), 9, nil},
		{"ApiVersions v3 is v0", 18, 3, cat(corr, []byte{7, 7}), 4, nil},
		{"ApiVersions v4 (unknown) is v0", 18, 4, corr, 4, nil},
		{"controlled shutdown v0", 7, 0, corr, 4, nil},
		{"unknown key is v0", 1000, 1, corr, 4, nil},
		{"short correlation id", 3, 8, corr[:3], 0, ErrIncomplete},
		{"v1 missing tag count", 3, 9, corr, 0, ErrIncomplete},
		{"v1 tag bytes missing", 3, 9, cat(corr, []byte{1, 0, 3, 'a'}), 0, ErrIncomplete},
		{"v1 bad uvarint", 3, 9, cat(corr, []byte{0xff, 0xff, 0xff, 0xff, 0xff}), 0, ErrMalformedResponseHeader},
		{"v1 tags over the cap", 3, 9, cat(corr, []byte{1, 0, 0x80, 0x08}), 0, ErrMalformedResponseHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResponseHeaderLen(tt.b, tt.key, tt.version)
			if got != tt.want || err != tt.err {
				t.Fatalf("ResponseHeaderLen = %d, %v, want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestResponseHeaderLenKmsg checks every key and version against kmsg's
// response types: flexible responses have header v1, except ApiVersions.
func TestResponseHeaderLenKmsg(t *testing.T) {
	for key := int16(0); key <= MaxKnownKey; key++ {
		resp := kmsg.ResponseForKey(key)
		if resp == nil {
			continue
		}
		for v := int16(0); v <= resp.MaxVersion(); v++ {
			resp.SetVersion(v)
			want := 4
			b := []byte{0, 0, 0, 1}
			if resp.IsFlexible() && key != 18 {
				want = 5
				b = append(b, 0)
			}
			b = resp.AppendTo(b)
			t.Run(fmt.Sprintf("%s v%d", kmsg.NameForKey(key), v), func(t *testing.T) {
				got, err := ResponseHeaderLen(b, key, v)
				if got != want || err != nil {
					t.Fatalf("ResponseHeaderLen = %d, %v, want %d", got, err, want)
				}
			})
		}
	}
}

// maxHeaderLen is an upper bound on the length of a request header whose
// client id is at most maxClientID bytes: api key, version, correlation id,
// client id length and bytes, and MaxTaggedLen bytes of tagged fields. A
// caller that buffers this much (or the whole frame, if smaller) never gets
// ErrIncomplete back from ParseRequestHeader.
func maxHeaderLen(maxClientID int) int {
	return MinRequestSize + 2 + max(maxClientID, 0) + MaxTaggedLen
}
