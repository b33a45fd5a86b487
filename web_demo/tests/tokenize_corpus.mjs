// Tokenize a prompt corpus with @huggingface/tokenizers, the library the web page uses, reading
// the bundle's tokenizer.json unchanged (runtime/TOKENIZER.md).
//
//   node tests/tokenize_corpus.mjs TOKENIZER_JSON CORPUS_JSON [MAX_TOKENS]
//
// CORPUS_JSON is a JSON array of prompt strings. Prints one JSON array: the ids of each prompt,
// [CLS] ... [SEP], truncated to MAX_TOKENS (default 32) the way Python `tokenizers` truncates one
// sequence: the library has no truncation, so the first MAX_TOKENS - 2 word pieces are kept and
// [SEP] is put back at the end.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [tokenizerPath, corpusPath, maxArg] = process.argv.slice(2);
if (!tokenizerPath || !corpusPath) {
  console.error("usage: node tests/tokenize_corpus.mjs TOKENIZER_JSON CORPUS_JSON [MAX_TOKENS]");
  process.exit(2);
}
const maxTokens = maxArg === undefined ? 32 : Number(maxArg);
const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, { do_lower_case: true });
const sep = tokenizer.encode("").ids.at(-1);   // [CLS] [SEP] for the empty prompt
const prompts = JSON.parse(readFileSync(corpusPath, "utf8"));

const out = prompts.map((prompt) => {
  const ids = tokenizer.encode(prompt).ids;
  return ids.length > maxTokens ? [...ids.slice(0, maxTokens - 1), sep] : ids;
});
process.stdout.write(JSON.stringify(out));
