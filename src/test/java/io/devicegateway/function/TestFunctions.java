package io.devicegateway.function;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;

import jakarta.inject.Singleton;

/**
 * Device functions the black-box tests register (every @QuarkusTest app has them); each applies only to its own
 * {@code test/...} streams, so other tests' traffic never meets them.
 */
public final class TestFunctions {

    private TestFunctions() {
    }

    static String text(DeviceMessageView m) {
        return new String(m.payloadBytes(), StandardCharsets.UTF_8);
    }

    /** Throws on payloads starting "boom" (a function's bug) and "vm-error" (an error that is not the function's). */
    @Singleton
    public static class Throws implements DeviceFunction {
        @Override
        public String name() {
            return "test-throws";
        }

        @Override
        public List<String> streams() {
            return List.of("test/throws");
        }

        @Override
        public Outcome apply(DeviceMessageView message) {
            String text = text(message);
            if (text.startsWith("boom")) {
                throw new IllegalStateException("test: the function's own failure");
            }
            if (text.startsWith("vm-error")) {
                throw new InternalError("test: a VM error escaping the function");
            }
            return Outcome.keep();
        }
    }

    /** Drops payloads equal to "drop". */
    @Singleton
    public static class Filters implements DeviceFunction {
        @Override
        public String name() {
            return "test-filter";
        }

        @Override
        public List<String> streams() {
            return List.of("test/filter");
        }

        @Override
        public Outcome apply(DeviceMessageView message) {
            return text(message).equals("drop") ? Outcome.drop() : Outcome.keep();
        }
    }

    /** Appends its letter to the payload and a {@code trace} header: shows the order functions ran in. */
    abstract static class Append implements DeviceFunction {
        private final String letter;
        private final int order;

        Append(String letter, int order) {
            this.letter = letter;
            this.order = order;
        }

        @Override
        public String name() {
            return "test-append-" + letter;
        }

        @Override
        public int order() {
            return order;
        }

        @Override
        public List<String> streams() {
            return List.of("test/compose/#");
        }

        @Override
        public Outcome apply(DeviceMessageView message) {
            return Outcome.replace().payload((text(message) + letter).getBytes(StandardCharsets.UTF_8))
                    .header("trace", letter);
        }
    }

    // declared c, b, a: the run order must come from order() and then the name, never from discovery
    @Singleton
    public static class AppendC extends Append {
        public AppendC() {
            super("c", 20);
        }
    }

    @Singleton
    public static class AppendB extends Append {
        public AppendB() {
            super("b", 20);
        }
    }

    @Singleton
    public static class AppendA extends Append {
        public AppendA() {
            super("a", 10);
        }
    }

    /** Events only: replaces the payload of events on {@code test/kind}, never telemetry. */
    @Singleton
    public static class EventsOnly implements DeviceFunction {
        @Override
        public String name() {
            return "test-events-only";
        }

        @Override
        public Set<Kind> kinds() {
            return Set.of(Kind.EVENTS);
        }

        @Override
        public List<String> streams() {
            return List.of("test/kind");
        }

        @Override
        public Outcome apply(DeviceMessageView message) {
            return Outcome.replace().payload("event-seen".getBytes(StandardCharsets.UTF_8)).contentType("text/plain");
        }
    }
}
