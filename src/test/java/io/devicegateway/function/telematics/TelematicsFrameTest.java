package io.devicegateway.function.telematics;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

import org.junit.jupiter.api.Test;

import io.devicegateway.function.DeviceFunction;
import io.devicegateway.function.DeviceMessageView;
import io.devicegateway.function.Outcome;

class TelematicsFrameTest {

    private static final TelematicsFrame MUNICH = new TelematicsFrame(42, 1_700_000_000_123L, 481_371_790, 115_753_820,
            8_725);

    @Test
    void encodesTheDocumentedBigEndianLayout() {
        assertEquals("a501" + "0000002a" + "0000018bcfe5687b" + "1cb1268e" + "06e6435c" + "2215",
                HexFormat.of().formatHex(MUNICH.encode()));
    }

    @Test
    void decodesWhatItEncodes() throws Exception {
        assertEquals(MUNICH, TelematicsFrame.decode(ByteBuffer.wrap(MUNICH.encode())));
    }

    @Test
    void readsTheSequenceAndSpeedAsUnsigned() throws Exception {
        TelematicsFrame max = new TelematicsFrame(4_294_967_295L, 0, 0, 0, 65_535);
        TelematicsFrame decoded = TelematicsFrame.decode(ByteBuffer.wrap(max.encode()));
        assertEquals(4_294_967_295L, decoded.sequence());
        assertEquals(65_535, decoded.speedCentiKmh());
    }

    @Test
    void writesExactDecimalJson() {
        assertEquals("{\"sequence\":42,\"timestamp_ms\":1700000000123,\"lat\":48.137179,\"lon\":11.575382,"
                + "\"speed_kmh\":87.25}", MUNICH.toJson());
        assertEquals("{\"sequence\":0,\"timestamp_ms\":0,\"lat\":-33.8688197,\"lon\":-0.0000001,\"speed_kmh\":0.05}",
                new TelematicsFrame(0, 0, -338_688_197, -1, 5).toJson());
        assertEquals("{\"sequence\":1,\"timestamp_ms\":-1,\"lat\":90,\"lon\":-180,\"speed_kmh\":0}",
                new TelematicsFrame(1, -1, 900_000_000, -1_800_000_000, 0).toJson());
    }

    @Test
    void rejectsAFrameOfTheWrongLength() {
        assertReason(TelematicsFrame.WRONG_LENGTH, new byte[23]);
        assertReason(TelematicsFrame.WRONG_LENGTH, new byte[25]);
        assertReason(TelematicsFrame.WRONG_LENGTH, new byte[0]);
    }

    @Test
    void rejectsABadMagicAnUnknownVersionAndCoordinatesOutOfRange() {
        byte[] frame = MUNICH.encode();
        frame[0] = 0x7b;
        assertReason(TelematicsFrame.BAD_MAGIC, frame);
        frame = MUNICH.encode();
        frame[1] = 2;
        assertReason(TelematicsFrame.UNSUPPORTED_VERSION, frame);
        assertReason(TelematicsFrame.OUT_OF_RANGE, new TelematicsFrame(1, 0, 900_000_001, 0, 0).encode());
        assertReason(TelematicsFrame.OUT_OF_RANGE, new TelematicsFrame(1, 0, 0, -1_800_000_001, 0).encode());
    }

    @Test
    void decoderReplacesThePayloadWithJsonAndSetsContentTypeAndSequence() throws Exception {
        Outcome outcome = decoder().apply(view(MUNICH.encode()));
        Outcome.Replace replace = (Outcome.Replace) outcome;
        assertArrayEquals(MUNICH.toJson().getBytes(StandardCharsets.US_ASCII), replace.newPayload());
        assertEquals("application/json", replace.newContentType());
        assertTrue(replace.setsSequence());
        assertEquals(42, replace.newSequence());
        assertTrue(!replace.setsEpoch(), "an epoch the device sent is kept");
    }

    @Test
    void decoderDeadLettersAMalformedFrameWithItsReason() throws Exception {
        assertEquals(new Outcome.DeadLetter(TelematicsFrame.WRONG_LENGTH), decoder().apply(view(new byte[] { 1, 2 })));
    }

    private static TelematicsDecoder decoder() {
        return new TelematicsDecoder(null);
    }

    private static DeviceMessageView view(byte[] payload) {
        return DeviceMessageView.builder("truck-1", DeviceFunction.Kind.TELEMETRY, "telematics/position", payload)
                .build();
    }

    private static void assertReason(String reason, byte[] payload) {
        TelematicsFrame.Malformed e = assertThrows(TelematicsFrame.Malformed.class,
                () -> TelematicsFrame.decode(ByteBuffer.wrap(payload)));
        assertEquals(reason, e.reason());
    }
}
