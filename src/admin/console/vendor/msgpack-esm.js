// The vendored @msgpack/msgpack UMD build (vendor/msgpack.min.js, loaded by a classic <script>
// before any module) as the ES module the Warden JS client imports by its npm name.
const M = globalThis.MessagePack;
export const encode = M.encode;
export const decode = M.decode;
export const Encoder = M.Encoder;
export const Decoder = M.Decoder;
