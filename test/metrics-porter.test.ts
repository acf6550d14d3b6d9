// The Porter stemmer against NLTK's own unit tests (nltk/test/unit/test_stem.py, NLTK 3.8) and the
// examples of Porter (1980) that NLTK's docstrings quote step by step. (NLTK's 23,531-word
// vocabulary test needs nltk_data; test/metrics-reference-vectors.test.ts checks 7,000 words
// against NLTK's output instead.)
import { describe, expect, it } from "vitest";
import { porterStem } from "../src/metrics/porter-stemmer.js";

describe("NLTK PorterStemmer (nltk/test/unit/test_stem.py)", () => {
  it("test_oed_bug", () => expect(porterStem("oed")).toBe("o"));

  it("test_lowercase_option (to_lowercase=True, the default)", () => {
    expect(porterStem("On")).toBe("on");
    expect(porterStem("I")).toBe("i");
    expect(porterStem("Github")).toBe("github");
  });
});

describe("Porter (1980) examples, as NLTK's NLTK_EXTENSIONS mode stems them", () => {
  it.each([
    // step 1a
    ["caresses", "caress"], ["ponies", "poni"], ["ties", "tie"], ["caress", "caress"], ["cats", "cat"],
    // step 1b
    ["feed", "feed"], ["agreed", "agre"], ["plastered", "plaster"], ["bled", "bled"], ["motoring", "motor"],
    ["sing", "sing"], ["conflated", "conflat"], ["troubled", "troubl"], ["sized", "size"], ["hopping", "hop"],
    ["tanned", "tan"], ["falling", "fall"], ["hissing", "hiss"], ["fizzed", "fizz"], ["failing", "fail"], ["filing", "file"],
    // step 1c (NLTK: y -> i only after a consonant that is not the first letter)
    ["happy", "happi"], ["sky", "sky"], ["enjoy", "enjoy"], ["spy", "spi"],
    // steps 2-5 on whole words
    ["relational", "relat"], ["conditional", "condit"], ["rational", "ration"], ["digitizer", "digit"],
    ["generalizations", "gener"], ["hopefulness", "hope"], ["electrical", "electr"], ["adjustable", "adjust"],
    ["adoption", "adopt"], ["controll", "control"], ["roll", "roll"], ["probate", "probat"], ["rate", "rate"], ["cease", "ceas"],
    // NLTK's irregular forms
    ["skies", "sky"], ["dying", "die"], ["lying", "lie"], ["news", "news"], ["innings", "inning"], ["proceed", "proceed"],
  ])("%s -> %s", (word, stem) => expect(porterStem(word)).toBe(stem));
});
