/** WGSL files imported as text (esbuild `loader: { '.wgsl': 'text' }`). */
declare module '*.wgsl' {
  const source: string;
  export default source;
}

/** The WebAssembly dense pass, built into dist/wasm by `npm run build` and bundled as bytes (esbuild `loader: { '.wasm': 'binary' }`). */
declare module '*.wasm' {
  const bytes: Uint8Array<ArrayBuffer>;
  export default bytes;
}
