// The report page's script: renders and filters what html.py computed (it never tallies).
// Its data (the JSON element id="data", html.py matrix_data): cases (ids front-coded: k is
// the length shared with the previous id), strings (the string table), cells (matrix), doc
// (documents' cells), grid + gcells (release grids), rows, cols; every "c" is a list of case
// indices in runs: "n, -k" stands for n, n+1, ..., n+k.  Text enters the DOM as textContent.
(function(){
'use strict';
var D=JSON.parse(document.getElementById('data').textContent);
var PREFIX='nox -s matrix -- --case ';
var INFRA={};
D.infra.forEach(function(o){INFRA[o]=1;});
var state={filter:'',format:'',operation:'',outcome:'',sort:'',dir:1,open:''};
(function(){var prev='';D.cases.forEach(function(c){
 c.id=prev.slice(0,c.k||0)+c.id;prev=c.id;});})();

function el(tag,text,cls){var e=document.createElement(tag);
 if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function str(i){return i===undefined||i===null?'':D.strings[i];}
function expand(runs){var out=[];(runs||[]).forEach(function(n){
 if(n<0){var last=out[out.length-1];for(var j=1;j<=-n;j++)out.push(last+j);}
 else out.push(n);});return out;}
function count(p,a,i){return p+'/'+a+(i?' (+'+i+' infra)':'');}
function outcomes(o){return Object.keys(o||{}).sort().map(function(k){
 return o[k]+' '+k;}).join(', ');}

// ---------------------------------------------------------------- the full matrix
function cellClass(c){if(!c)return 'o-empty';
 if(c.a)return c.p===c.a?'o-all':(c.p?'o-some':'o-none');
 if(c.i)return 'o-infra';return 'o-skip';}
function cellText(c){if(!c)return '';var t=c.a?(c.p+'/'+c.a):(c.i?'infra':(c.s?'skipped':''));
 if(c.a&&c.i)t+=' ⚠'+c.i;return t;}
function rowKey(r){return r.format+'/'+r.operation+'/'+r.api;}
function mKey(r,col){return 'm:'+rowKey(r)+'@'+col.key;}
function hasOutcome(r,want){for(var j=0;j<D.cols.length;j++){var c=D.cells[mKey(r,D.cols[j])];
 if(!c)continue;if(want==='fail'&&c.p<c.a)return true;if(want==='infra'&&c.i)return true;
 if(want==='skipped'&&c.s)return true;if(want==='passed'&&c.p)return true;
 if((want==='failed'||want==='error')&&c.o[want])return true;}return false;}
function ratio(c){if(!c)return 2;return c.a?c.p/c.a:(c.i?-1:1.5);}
function buildHead(){var thead=document.querySelector('#matrix-table thead');var tr=el('tr');
 var first=el('th',null,'rl');first.appendChild(el('b','format / operation / API'));
 first.dataset.sort='';tr.appendChild(first);
 D.cols.forEach(function(col){var th=el('th');th.dataset.sort=col.key;th.title='sort by '+col.key;
  th.appendChild(el('b',col.env));th.appendChild(el('div',col.mode));
  th.appendChild(el('div','TF '+(col.tf||'?')));th.appendChild(el('div','hub '+(col.hub||'?')));
  th.appendChild(el('div',col.keras||'keras ?'));
  th.appendChild(el('div',(col.device||'?')+' · '+(col.backend||'?')));tr.appendChild(th);});
 thead.appendChild(tr);
 tr.addEventListener('click',function(ev){var th=ev.target.closest('th');if(!th)return;
  var k=th.dataset.sort;if(state.sort===k)state.dir=-state.dir;else{state.sort=k;state.dir=1;}
  render();writeHash();});}
function visibleRows(){var f=state.filter.toLowerCase();var rows=D.rows.filter(function(r){
  if(state.format&&r.format!==state.format)return false;
  if(state.operation&&r.operation!==state.operation)return false;
  if(f&&rowKey(r).toLowerCase().indexOf(f)<0)return false;
  if(state.outcome&&!hasOutcome(r,state.outcome))return false;return true;});
 if(state.sort){var col=D.cols.filter(function(c){return c.key===state.sort;})[0];
  if(col)rows.sort(function(a,b){
   return state.dir*(ratio(D.cells[mKey(a,col)])-ratio(D.cells[mKey(b,col)]));});}
 else if(state.dir<0)rows.reverse();return rows;}
function render(){var tbody=document.querySelector('#matrix-table tbody');
 var rows=visibleRows();var frag=document.createDocumentFragment();
 rows.forEach(function(r){var tr=el('tr');tr.dataset.row=rowKey(r);
  tr.appendChild(el('th',rowKey(r),'rl'));
  D.cols.forEach(function(col){var key=mKey(r,col);var c=D.cells[key];
   var td=el('td',cellText(c),'m '+cellClass(c));if(c){td.dataset.key=key;td.tabIndex=0;
   td.title=key;}tr.appendChild(td);});frag.appendChild(tr);});
 tbody.textContent='';tbody.appendChild(frag);
 document.getElementById('row-count').textContent=rows.length+' of '+D.rows.length+' rows';}

// ---------------------------------------------------------------- the release grids
var LEVEL_CLASS={supported:'g-all',partial:'g-some',unsupported:'g-none',unknown:'g-na'};
function gKey(g,producer,consumer){return 'g:'+g.format+'/'+producer+'/'+consumer;}
function gTitle(g,producer,consumer,c){
 var t=g.title+': made in TF '+producer+', loaded in TF '+consumer;
 if(!c)return t+': not run';
 t+=': '+count(c.p,c.a,c.i)+' passed ('+c.lv+')';
 return c.e!==undefined?t+'\n'+str(c.e):t;}
function gridCalls(g){var seen={},out=[];Object.keys(g.api||{}).sort().forEach(function(col){
 var api=g.api[col];if(!seen[api]){seen[api]=1;out.push(api);}});return out.join(' / ');}
function buildGrids(){var box=document.getElementById('grid-maps');if(!box)return;
 D.grid.forEach(function(g){var wrap=el('div',null,'gmap');wrap.dataset.format=g.format;
  wrap.appendChild(el('h3',g.title+' — '+gridCalls(g)));
  var scroll=el('div',null,'gwrap');var table=el('table',null,'grid');
  table.setAttribute('data-testid','grid-table');table.dataset.format=g.format;
  var head=el('tr');var corner=el('th','made \\ loaded','gcorner');
  corner.title='rows: the producer\'s TF release (made the model); columns: the consumer\'s '+
   '(loads it)';head.appendChild(corner);
  g.releases.forEach(function(r){var th=el('th',null,'gcol');th.appendChild(el('span',r));
   th.title='loaded in TF '+r;head.appendChild(th);});
  var thead=el('thead');thead.appendChild(head);table.appendChild(thead);
  var tbody=el('tbody');
  g.releases.forEach(function(producer){var tr=el('tr');
   var th=el('th',producer,'grow');th.title='made in TF '+producer;tr.appendChild(th);
   g.releases.forEach(function(consumer){var key=gKey(g,producer,consumer);var c=D.gcells[key];
    var td=el('td',null,'g '+(c?LEVEL_CLASS[c.lv]||'g-na':'g-empty')+
     (producer===consumer?' g-diag':''));
    td.title=gTitle(g,producer,consumer,c);td.setAttribute('aria-label',td.title);
    if(c){td.dataset.key=key;td.tabIndex=0;td.setAttribute('role','button');
     td.setAttribute('data-testid','grid-cell');}
    tr.appendChild(td);});tbody.appendChild(tr);});
  table.appendChild(tbody);scroll.appendChild(table);wrap.appendChild(scroll);
  box.appendChild(wrap);});}

// ---------------------------------------------------------------- the drill-down
function gridOf(key){for(var j=0;j<D.grid.length;j++){var g=D.grid[j];
 if(key.indexOf('g:'+g.format+'/')===0)return g;}return null;}
function describe(key,cell){var n=expand(cell.c).length;
 if(key.indexOf('case:')===0)return '1 case: '+cell.o;
 var all=n+' case'+(n===1?'':'s')+': '+outcomes(cell.o);
 if(key.indexOf('doc:')===0){var calls=(cell.calls||[]).join(', ');
  var t=(calls?'the documents\' calls ('+calls+')':'counted')+': '+count(cell.p,cell.a,cell.i)+
   ' passed'+(cell.lv?' — '+cell.lv:'');
  if(cell.all)t+='; all variants: '+count(cell.all.p,cell.all.a,cell.all.i);
  return t+'. '+all;}
 if(key.indexOf('g:')===0){var g=gridOf(key);var parts=key.split('/');
  return (g?g.title+' ('+gridCalls(g)+')':key)+', made in TF '+parts[parts.length-2]+
   ', loaded in TF '+parts[parts.length-1]+': '+count(cell.p,cell.a,cell.i)+' passed — '+
   cell.lv+(cell.e!==undefined?' ('+str(cell.e)+')':'')+'. First the '+cell.k+
   ' counted, then the other cases of this format between these releases. '+all;}
 return count(cell.p,cell.a,cell.i)+' passed. '+all;}
function casesOf(key){if(key.indexOf('case:')===0){var id=key.slice(5);
  for(var i=0;i<D.cases.length;i++)if(D.cases[i].id===id)return {c:[i],o:D.cases[i].o,k:1};
  return null;}
 if(key.indexOf('doc:')===0)return D.doc[key];
 if(key.indexOf('g:')===0)return D.gcells[key];
 return D.cells[key];}
function copyButton(text){var b=el('button','copy','copy');b.type='button';
 b.addEventListener('click',function(){if(navigator.clipboard)navigator.clipboard.writeText(text);
  b.textContent='copied';});return b;}
function fmtErr(c){if(c.e===undefined)return '';var t=String(c.e);
 if(c.r!==undefined)t+=' (rel '+c.r+')';return t+' vs '+D.tolerance;}
function caseRow(i,extra){var c=D.cases[i];var tr=el('tr',null,extra?'extra':'');
 tr.setAttribute('data-testid','drilldown-row');tr.dataset.case=c.id;
 if(extra)tr.dataset.extra='1';
 tr.appendChild(el('td',INFRA[c.o]?c.o+' (infrastructure)':c.o,'out-'+c.o));
 var id=el('td');id.appendChild(el('code',c.id));if(c.v)id.appendChild(el('div','via '+c.v));
 if(extra)id.appendChild(el('div','not in the grid\'s count','note'));
 tr.appendChild(id);tr.appendChild(el('td',str(c.p)));
 var err=el('td');if(c.t!==undefined)err.appendChild(el('b',str(c.t)+': '));
 if(c.m!==undefined)err.appendChild(el('span',str(c.m)));
 if(c.tb!==undefined)err.appendChild(el('pre',str(c.tb)));tr.appendChild(err);
 tr.appendChild(el('td',fmtErr(c)));tr.appendChild(el('td',c.d!==undefined?c.d+' s':''));
 var repro=c.x||(PREFIX+c.id);var rp=el('td');rp.appendChild(el('code',repro));
 rp.appendChild(copyButton(repro));tr.appendChild(rp);return tr;}
function failedFirst(list){return list.map(function(i,n){return [i,n];}).sort(function(a,b){
  var pa=D.cases[a[0]].o==='passed',pb=D.cases[b[0]].o==='passed';
  return pa===pb?a[1]-b[1]:(pa?1:-1);}).map(function(x){return x[0];});}
function open(key){var aside=document.getElementById('drill');var cell=key?casesOf(key):null;
 state.open=cell?key:'';if(!cell){aside.hidden=true;return;}
 document.getElementById('drill-title').textContent=key;
 document.getElementById('drill-summary').textContent=describe(key,cell);
 var list=expand(cell.c);var k=cell.k===undefined?list.length:cell.k;
 var rows=document.getElementById('drill-rows');rows.textContent='';
 var frag=document.createDocumentFragment();
 failedFirst(list.slice(0,k)).forEach(function(i){frag.appendChild(caseRow(i,false));});
 failedFirst(list.slice(k)).forEach(function(i){frag.appendChild(caseRow(i,true));});
 rows.appendChild(frag);aside.hidden=false;}

// ---------------------------------------------------------------- state in the URL hash
function readHash(){var h=location.hash.replace(/^#/,'');var p={};
 h.split('&').forEach(function(kv){if(!kv)return;var i=kv.indexOf('=');
  var k=i<0?kv:kv.slice(0,i);var v=i<0?'':kv.slice(i+1);
  try{p[k]=decodeURIComponent(v.replace(/\+/g,' '));}catch(e){p[k]=v;}});return p;}
function writeHash(){var parts=[];
 ['filter','format','operation','outcome','sort','open'].forEach(function(k){
  if(state[k])parts.push(k+'='+encodeURIComponent(state[k]).replace(/%2F/g,'/')
   .replace(/%40/g,'@').replace(/%3A/g,':'));});
 if(state.sort&&state.dir<0)parts.push('dir=desc');
 var h=parts.length?'#'+parts.join('&'):' ';
 if(history.replaceState)history.replaceState(null,'',h===' '?location.pathname+location.search:h);
 else location.hash=h;}
function applyHash(){var p=readHash();state.filter=p.filter||'';state.format=p.format||'';
 state.operation=p.operation||'';state.outcome=p.outcome||'';state.sort=p.sort||'';
 state.dir=p.dir==='desc'?-1:1;
 document.getElementById('filter').value=state.filter;
 document.getElementById('f-format').value=state.format;
 document.getElementById('f-operation').value=state.operation;
 document.getElementById('f-outcome').value=state.outcome;render();open(p.open||'');}
function fillSelect(id,values){var s=document.getElementById(id);
 values.forEach(function(v){var o=el('option',v);o.value=v;s.appendChild(o);});}
function uniq(f){var seen={},out=[];
 D.rows.forEach(function(r){if(!seen[r[f]]){seen[r[f]]=1;out.push(r[f]);}});return out;}

fillSelect('f-format',uniq('format'));fillSelect('f-operation',uniq('operation'));buildHead();
buildGrids();
document.getElementById('filter').addEventListener('input',function(e){
 state.filter=e.target.value;render();writeHash();});
[['f-format','format'],['f-operation','operation'],['f-outcome','outcome']].forEach(function(p){
 document.getElementById(p[0]).addEventListener('change',function(e){
  state[p[1]]=e.target.value;render();writeHash();});});
function onActivate(ev){var t=ev.target.closest('[data-key]');
 if(!t||ev.target.closest('summary'))return;  // a <details> in a cell opens, no drill-down
 if(ev.type==='keydown'&&ev.key!=='Enter')return;
 if(t.tagName==='A')ev.preventDefault();  // a case link inside a clickable cell
 open(t.dataset.key);writeHash();}
document.addEventListener('click',onActivate);document.addEventListener('keydown',onActivate);
document.getElementById('drill-close').addEventListener('click',function(){open('');writeHash();});
window.addEventListener('hashchange',applyHash);applyHash();
document.body.setAttribute('data-ready','1');
})();
