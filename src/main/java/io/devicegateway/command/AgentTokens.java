package io.devicegateway.command;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;

/** The configured agent tokens: names, SHA-256 hashes and optional device-id scopes. */
public final class AgentTokens {

    /** Characters that separate the segments of a device id ({@code truck-1}, {@code truck.eu.7}, ...). */
    static final String SEPARATORS = "-.:_";
    private static final Pattern SCOPE = Pattern.compile("[A-Za-z0-9._:-]{1,128}");

    /**
     * An authenticated agent. An empty scope (an entry without a third part) covers every device. A scope covers
     * whole id segments: {@code truck} covers {@code truck} and {@code truck-1}, {@code truck.eu.7}, ... but not
     * {@code trucker-1}; a scope ending in a separator ({@code truck-}) covers every id that starts with it.
     */
    public record Agent(String name, String scope) {
        public boolean mayAddress(String deviceId) {
            if (scope.isEmpty()) {
                return true;
            }
            if (!deviceId.startsWith(scope)) {
                return false;
            }
            return deviceId.length() == scope.length() || endsWithSeparator(scope)
                    || SEPARATORS.indexOf(deviceId.charAt(scope.length())) >= 0;
        }

        /** For PERMISSION_DENIED messages. */
        public String scopeDescription() {
            return endsWithSeparator(scope) ? "devices whose id starts with '" + scope + "'"
                    : "device '" + scope + "' and ids continuing it after a separator (" + SEPARATORS + ")";
        }
    }

    private record Entry(Agent agent, byte[] hash) {
    }

    private final List<Entry> entries;

    private AgentTokens(List<Entry> entries) {
        this.entries = entries;
    }

    /**
     * Parses {@code name:sha256hex[:scope]} entries; a malformed entry (including an empty scope, which would read
     * as "every device") is a startup error naming it, never the token.
     */
    public static AgentTokens parse(List<String> specs) {
        List<Entry> entries = new ArrayList<>();
        for (String spec : specs) {
            String trimmed = spec.trim();
            if (trimmed.isEmpty()) {
                continue;
            }
            String[] parts = trimmed.split(":", 3);
            String name = parts[0].isBlank() ? "(unnamed)" : parts[0];
            if (parts.length < 2 || parts[0].isBlank() || !parts[1].matches("[0-9a-fA-F]{64}")) {
                throw new IllegalArgumentException("gateway.grpc.auth.tokens: entry '" + name
                        + "' must be name:sha256-hex-of-token[:device-id-scope] (64 hex digits)");
            }
            String scope = parts.length == 3 ? parts[2] : "";
            if (parts.length == 3 && scope.isEmpty()) {
                throw new IllegalArgumentException("gateway.grpc.auth.tokens: entry '" + name + "' has an empty "
                        + "device-id scope (trailing ':'); omit the third part to allow every device");
            }
            if (!scope.isEmpty() && !SCOPE.matcher(scope).matches()) {
                throw new IllegalArgumentException("gateway.grpc.auth.tokens: entry '" + name + "' has device-id "
                        + "scope '" + scope + "', which must match [A-Za-z0-9._:-]{1,128}");
            }
            entries.add(new Entry(new Agent(parts[0], scope), HexFormat.of().parseHex(parts[1].toLowerCase())));
        }
        return new AgentTokens(List.copyOf(entries));
    }

    public int size() {
        return entries.size();
    }

    /** Compares the token's hash with every entry in constant time (no early exit on a match or a mismatch). */
    public Optional<Agent> authenticate(String token) {
        byte[] hash = sha256(token);
        Agent found = null;
        for (Entry e : entries) {
            if (MessageDigest.isEqual(e.hash(), hash) && found == null) {
                found = e.agent();
            }
        }
        return Optional.ofNullable(found);
    }

    private static boolean endsWithSeparator(String scope) {
        return !scope.isEmpty() && SEPARATORS.indexOf(scope.charAt(scope.length() - 1)) >= 0;
    }

    public static byte[] sha256(String token) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
