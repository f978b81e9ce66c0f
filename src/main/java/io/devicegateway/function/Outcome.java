package io.devicegateway.function;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * What a {@link DeviceFunction} decided for one message: {@link #keep()}, {@link #replace()} (new payload, content
 * type, sequence, extra Kafka headers), {@link #drop()} (filtered: acknowledged to the broker, not written, counted in
 * {@code gateway_functions_filtered_total{function}}) or {@link #deadLetter(String)} (written to the dead-letter topic
 * with that reason, then acknowledged). Immutable.
 */
public sealed interface Outcome permits Outcome.Keep, Outcome.Drop, Outcome.DeadLetter, Outcome.Replace {

    /** Leave the message as it is; the next function (or Kafka) gets it unchanged. */
    static Outcome keep() {
        return Keep.INSTANCE;
    }

    /** Filter it out: acknowledged to the broker, not written to Kafka, counted. */
    static Outcome drop() {
        return Drop.INSTANCE;
    }

    /**
     * Reject it: the device's original message goes to the dead-letter topic with header {@code reason} = this
     * reason and header {@code function} = the function's name.
     *
     * @param reason {@code [a-z0-9][a-z0-9.-]{0,63}}, e.g. {@code telematics-bad-magic}; also the {@code reason} tag
     *               of {@code gateway_ingest_dead_letters_total}, so keep the set of reasons small
     */
    static Outcome deadLetter(String reason) {
        if (reason == null || !REASON.matcher(reason).matches()) {
            throw new IllegalArgumentException("a dead-letter reason must match " + REASON.pattern());
        }
        return new DeadLetter(reason);
    }

    /** Start a replacement; set what changes ({@code payload}, {@code contentType}, {@code sequence}, headers). */
    static Replace replace() {
        return Replace.NOTHING;
    }

    Pattern REASON = Pattern.compile("[a-z0-9][a-z0-9.-]{0,63}");
    Pattern HEADER_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
    /** Headers the gateway writes itself (README: Kafka records); a function may not set these. */
    Set<String> RESERVED_HEADERS = Set.of("device-id", "mqtt-topic", "kind", "reason", "payload-size", "content-type",
            "payload-format", "sequence", "sequence-epoch", "dedup", "function", "error");

    /** See {@link #keep()}. */
    final class Keep implements Outcome {
        static final Keep INSTANCE = new Keep();

        private Keep() {
        }
    }

    /** See {@link #drop()}. */
    final class Drop implements Outcome {
        static final Drop INSTANCE = new Drop();

        private Drop() {
        }
    }

    /** See {@link #deadLetter(String)}. */
    record DeadLetter(String reason) implements Outcome {
    }

    /** One extra Kafka header of a replacement (names may repeat; order is kept). */
    record Header(String name, String value) {
    }

    /**
     * A replacement; every {@code with}-style call returns a new one. Fields left unset keep the message's value.
     * The payload array is taken as is (not copied): do not modify it afterwards.
     */
    final class Replace implements Outcome {
        static final Replace NOTHING = new Replace(null, null, false, 0, false, 0, List.of());

        private final byte[] payload;
        private final String contentType;
        private final boolean hasSequence;
        private final long sequence;
        private final boolean hasEpoch;
        private final long sequenceEpoch;
        private final List<Header> headers;

        private Replace(byte[] payload, String contentType, boolean hasSequence, long sequence, boolean hasEpoch,
                long sequenceEpoch, List<Header> headers) {
            this.payload = payload;
            this.contentType = contentType;
            this.hasSequence = hasSequence;
            this.sequence = sequence;
            this.hasEpoch = hasEpoch;
            this.sequenceEpoch = sequenceEpoch;
            this.headers = headers;
        }

        /** New payload bytes (must not be empty). */
        public Replace payload(byte[] newPayload) {
            if (newPayload == null || newPayload.length == 0) {
                throw new IllegalArgumentException("a replaced payload must not be empty");
            }
            return new Replace(newPayload, contentType, hasSequence, sequence, hasEpoch, sequenceEpoch, headers);
        }

        /** New content type (envelope {@code content_type}, header {@code content-type}), e.g. {@code application/json}. */
        public Replace contentType(String newContentType) {
            if (newContentType == null || newContentType.isEmpty()) {
                throw new IllegalArgumentException("a content type must not be empty");
            }
            return new Replace(payload, newContentType, hasSequence, sequence, hasEpoch, sequenceEpoch, headers);
        }

        /**
         * The message's sequence number (unsigned 64-bit): fills the envelope's {@code sequence} and the header
         * {@code sequence}, so duplicate removal applies to it. Keeps the epoch the message had.
         */
        public Replace sequence(long newSequence) {
            return new Replace(payload, contentType, true, newSequence, hasEpoch, sequenceEpoch, headers);
        }

        /** Sequence and epoch (both unsigned 64-bit). */
        public Replace sequence(long newSequence, long newEpoch) {
            return new Replace(payload, contentType, true, newSequence, true, newEpoch, headers);
        }

        /**
         * An extra Kafka header. Names: {@code [A-Za-z0-9][A-Za-z0-9._-]{0,127}}, none of {@link #RESERVED_HEADERS}
         * and not starting with {@code mqtt-user-} (the device's own properties).
         */
        public Replace header(String name, String value) {
            if (name == null || !HEADER_NAME.matcher(name).matches() || RESERVED_HEADERS.contains(name)
                    || name.startsWith("mqtt-user-")) {
                throw new IllegalArgumentException("header name not allowed for a function: " + name);
            }
            if (value == null) {
                throw new IllegalArgumentException("header " + name + " has no value");
            }
            List<Header> more = new ArrayList<>(headers.size() + 1);
            more.addAll(headers);
            more.add(new Header(name, value));
            return new Replace(payload, contentType, hasSequence, sequence, hasEpoch, sequenceEpoch,
                    Collections.unmodifiableList(more));
        }

        /** The new payload, or null to keep it. */
        public byte[] newPayload() {
            return payload;
        }

        /** The new content type, or null to keep it. */
        public String newContentType() {
            return contentType;
        }

        public boolean setsSequence() {
            return hasSequence;
        }

        public long newSequence() {
            return sequence;
        }

        public boolean setsEpoch() {
            return hasEpoch;
        }

        public long newSequenceEpoch() {
            return sequenceEpoch;
        }

        public List<Header> extraHeaders() {
            return headers;
        }
    }
}
