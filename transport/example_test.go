package transport_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tandemsync/tandem/transport"
)

func ExampleDecode() {
	// A join frame from a JavaScript client without storage, as captured.
	frame, _ := hex.DecodeString("b900046474797065646a6f696e6873656e64657249646e706565722d6a643070386168716b" +
		"6c706565724d65746164617461b900026973746f726167654964f76b6973457068656d6572616cf5" +
		"7819737570706f7274656450726f746f636f6c56657273696f6e73816131")
	m, err := transport.Decode(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := m.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Type, m.SenderID, m.SupportedProtocolVersions)
	fmt.Printf("storage %q ephemeral %v\n", m.PeerMetadata.StorageID, m.PeerMetadata.IsEphemeral)
	// Output:
	// join peer-jd0p8ahqk [1]
	// storage "" ephemeral true
}

func ExampleDecodeOptions_Decode() {
	opts := transport.DecodeOptions{MaxSize: 16}
	_, err := opts.Decode(make([]byte, 17))
	fmt.Println(errors.Is(err, transport.ErrTooLarge))
	// Output: true
}

func ExampleEncode() {
	b, err := transport.Encode(transport.Message{
		Type:                    transport.TypePeer,
		SenderID:                "tandem-server",
		TargetID:                "peer-jd0p8ahqk",
		SelectedProtocolVersion: transport.ProtocolV1,
		PeerMetadata:            &transport.PeerMetadata{StorageID: "d4fb6b58-00d0-49ff-839f-531855b08c6c"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := transport.Decode(b)
	fmt.Println(m.Type, m.TargetID, m.SelectedProtocolVersion, m.PeerMetadata.IsEphemeral)

	// A sync message without data is refused: JavaScript peers throw on it.
	_, err = transport.Encode(transport.Message{Type: transport.TypeSync, DocumentID: "3ybZCR5J6TswAfXnMg85CH9kGuZB"})
	fmt.Println(errors.Is(err, transport.ErrMissingField))
	// Output:
	// peer peer-jd0p8ahqk 1 false
	// true
}

func ExampleMessage_Validate() {
	m := transport.Message{Type: transport.TypeRequest, SenderID: "peer-a", TargetID: "server", Data: []byte{0x42}}
	fmt.Println(m.Validate())
	// Output: transport: missing field: request message without documentId
}

func ExampleKnownType() {
	fmt.Println(transport.KnownType(transport.TypeEphemeral), transport.KnownType("presence"))
	// Output: true false
}

func ExamplePipe() {
	client, server := transport.Pipe()
	defer client.Close(nil)
	ctx := context.Background()

	go func() {
		_ = client.WriteMessage(ctx, transport.Message{
			Type:                      transport.TypeJoin,
			SenderID:                  "peer-a",
			SupportedProtocolVersions: []string{transport.ProtocolV1},
		})
	}()
	join, err := server.ReadMessage(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("server got", join.Type, "from", join.SenderID)

	server.Close(errors.New("shutting down"))
	_, err = client.ReadMessage(ctx)
	fmt.Println(errors.Is(err, transport.ErrClosed))
	// Output:
	// server got join from peer-a
	// true
}
