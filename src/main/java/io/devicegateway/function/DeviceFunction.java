package io.devicegateway.function;

import java.util.List;
import java.util.Set;

/**
 * A user's step in the ingest: decode a binary frame, set the content type and sequence, add headers, drop or
 * dead-letter a message. Register it by making the implementation a CDI bean ({@code @ApplicationScoped} or
 * {@code @Singleton}); the gateway finds every bean of this type at startup.
 *
 * <p>It runs on the MQTT connection's event loop for every message it applies to, after the gateway validated the
 * topic and payload and before duplicate removal and Kafka: it must not block (no I/O, no locks held for long). Its
 * declarations ({@link #name()}, {@link #kinds()}, {@link #streams()}, {@link #order()}, {@link #enabled()}) are read
 * once at startup.
 *
 * <p><b>Order.</b> Functions run in ascending {@link #order()}; equal orders run by {@link #name()} (names are unique,
 * checked at startup), so the order never depends on bean discovery. Each sees the message as the previous one left
 * it (a replaced payload, content type or sequence).
 *
 * <p><b>Failures.</b> An exception (or a {@code null} outcome) dead-letters that message with reason
 * {@code function-failed} and headers {@code function} (this name) and {@code error} (the exception class); later
 * messages keep flowing.
 */
public interface DeviceFunction {

    /** What a device topic carries ({@code devices/{id}/telemetry/...} or {@code devices/{id}/events/...}). */
    enum Kind {
        TELEMETRY, EVENTS
    }

    /**
     * Unique name, {@code [A-Za-z0-9._-]{1,64}}: the {@code function} tag of the function metrics and the
     * {@code function} header of the dead letters it causes.
     */
    String name();

    /** The message kinds it applies to; default both. */
    default Set<Kind> kinds() {
        return Set.of(Kind.TELEMETRY, Kind.EVENTS);
    }

    /**
     * MQTT-style filters on the stream (the topic levels after {@code telemetry/} or {@code events/}), e.g.
     * {@code position/#} (position and everything below it), {@code +/raw}. {@code #} (the default) matches every
     * stream, also a message without one ({@code devices/{id}/telemetry}); every other filter needs a stream.
     */
    default List<String> streams() {
        return List.of("#");
    }

    /** Lower runs first; ties are broken by {@link #name()}. Default 0. */
    default int order() {
        return 0;
    }

    /** Whether the gateway runs it at all (read once at startup, e.g. from a config key). Default true. */
    default boolean enabled() {
        return true;
    }

    /**
     * Decides what happens to one message.
     *
     * @return {@link Outcome#keep()}, {@link Outcome#replace()}..., {@link Outcome#drop()} or
     *         {@link Outcome#deadLetter(String)}; never null
     */
    Outcome apply(DeviceMessageView message) throws Exception;
}
