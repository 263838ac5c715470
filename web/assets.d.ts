/** WGSL files imported as text (esbuild `loader: { '.wgsl': 'text' }`). */
declare module '*.wgsl' {
  const source: string;
  export default source;
}

/** The CPU engine's WebAssembly module, built into dist/wasm by `npm run build` and bundled as bytes (esbuild `loader: { '.wasm': 'binary' }`). */
declare module '*.wasm' {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
