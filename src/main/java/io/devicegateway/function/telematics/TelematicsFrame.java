package io.devicegateway.function.telematics;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * The example binary telematics frame (README: Device functions). Fixed layout, 24 bytes, big-endian:
 *
 * <pre>
 * offset size field
 *      0    1 magic      0xA5
 *      1    1 version    1
 *      2    4 sequence   uint32, the device's message counter
 *      6    8 timestamp  int64, ms since the epoch (device clock)
 *     14    4 latitude   int32, degrees x 1e7, -900000000..900000000
 *     18    4 longitude  int32, degrees x 1e7, -1800000000..1800000000
 *     22    2 speed      uint16, km/h x 100 (0..655.35 km/h)
 * </pre>
 *
 * @param sequence    0..2^32-1
 * @param latE7       latitude x 1e7
 * @param lonE7       longitude x 1e7
 * @param speedCentiKmh speed x 100
 */
public record TelematicsFrame(long sequence, long timestampMs, int latE7, int lonE7, int speedCentiKmh) {

    public static final int LENGTH = 24;
    public static final byte MAGIC = (byte) 0xA5;
    public static final byte VERSION = 1;

    /** Why a payload is not a frame; the dead-letter reason. No stack trace: a flood of bad frames stays cheap. */
    public static final class Malformed extends Exception {
        private final String reason;

        Malformed(String reason) {
            super(reason, null, false, false);
            this.reason = reason;
        }

        public String reason() {
            return reason;
        }
    }

    public static final String WRONG_LENGTH = "telematics-wrong-length";
    public static final String BAD_MAGIC = "telematics-bad-magic";
    public static final String UNSUPPORTED_VERSION = "telematics-unsupported-version";
    public static final String OUT_OF_RANGE = "telematics-out-of-range";

    /** Reads a frame from the buffer's remaining bytes (which must be exactly one frame). */
    public static TelematicsFrame decode(ByteBuffer in) throws Malformed {
        if (in.remaining() != LENGTH) {
            throw new Malformed(WRONG_LENGTH);
        }
        ByteBuffer b = in.duplicate().order(java.nio.ByteOrder.BIG_ENDIAN);
        if (b.get() != MAGIC) {
            throw new Malformed(BAD_MAGIC);
        }
        if (b.get() != VERSION) {
            throw new Malformed(UNSUPPORTED_VERSION);
        }
        long sequence = Integer.toUnsignedLong(b.getInt());
        long timestamp = b.getLong();
        int lat = b.getInt();
        int lon = b.getInt();
        int speed = Short.toUnsignedInt(b.getShort());
        if (lat < -900_000_000 || lat > 900_000_000 || lon < -1_800_000_000 || lon > 1_800_000_000) {
            throw new Malformed(OUT_OF_RANGE);
        }
        return new TelematicsFrame(sequence, timestamp, lat, lon, speed);
    }

    /** The frame's bytes (for devices, simulators and tests). */
    public byte[] encode() {
        return ByteBuffer.allocate(LENGTH).put(MAGIC).put(VERSION).putInt((int) sequence).putLong(timestampMs)
                .putInt(latE7).putInt(lonE7).putShort((short) speedCentiKmh).array();
    }

    /**
     * {@code {"sequence":42,"timestamp_ms":1700000000000,"lat":48.137179,"lon":11.575382,"speed_kmh":87.25}}:
     * decimal fixed-point (7 and 2 fraction digits, trailing zeros removed), exact, no floating point, no reflection.
     */
    public String toJson() {
        StringBuilder json = new StringBuilder(112).append("{\"sequence\":").append(sequence)
                .append(",\"timestamp_ms\":").append(timestampMs).append(",\"lat\":");
        fixed(json, latE7, 10_000_000L, 7).append(",\"lon\":");
        fixed(json, lonE7, 10_000_000L, 7).append(",\"speed_kmh\":");
        return fixed(json, speedCentiKmh, 100L, 2).append('}').toString();
    }

    public byte[] toJsonBytes() {
        return toJson().getBytes(StandardCharsets.US_ASCII);
    }

    private static StringBuilder fixed(StringBuilder out, long scaled, long scale, int digits) {
        if (scaled < 0) {
            out.append('-');
            scaled = -scaled;
        }
        out.append(scaled / scale);
        long fraction = scaled % scale;
        if (fraction != 0) {
            String f = Long.toString(fraction + scale).substring(1); // zero-padded to `digits`
            int end = digits;
            while (f.charAt(end - 1) == '0') {
                end--;
            }
            out.append('.').append(f, 0, end);
        }
        return out;
    }
}
